"""What the commands share about their options and their output.

Why one place: every command bounds its numbers (a NaN, an inf or a negative duration
must be one exit-2 line naming the option, never a hang or a traceback), parses
``NAME|all`` choices and prints either one JSON object or a table; several commands had
grown their own copy of each.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

from batchwise.errors import ConfigError

E = TypeVar("E", bound=Enum)
ALL = "all"
"""The choice that means every member, in definition order."""


def in_range(option: str, value: float, low: float, high: float, low_open: bool = False) -> float:
    """``value`` when it lies in ``[low, high]`` (``(low, high]`` with ``low_open``).

    NaN fails both comparisons, so it is refused like any out-of-range number.
    """
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        lo = "(" if low_open else "["
        raise ConfigError(f"must be a number in {lo}{low:g}, {high:g}], got {value}", field=option)
    return value


def one_of(option: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` when it is one of ``choices`` (exactly as spelled)."""
    if value not in choices:
        raise ConfigError(f"must be one of {', '.join(choices)}, got {value!r}", field=option)
    return value


def one_or_all(option: str, value: str, choices: type[E], noun: str) -> list[E]:
    """``value`` as one member of ``choices`` (case-insensitive), or all of them for ``all``."""
    v = value.strip().lower()
    if v == ALL:
        return list(choices)
    try:
        return [choices(v)]
    except ValueError:
        known = ", ".join([*(str(c.value) for c in choices), ALL])
        raise ConfigError(f"unknown {noun} {value!r} (one of {known})", field=option) from None


def emit_report(report: dict[str, Any], as_json: bool,
                print_table: Callable[[dict[str, Any], Any], None]) -> Any:  # fmt: skip
    """One JSON object on stdout under ``--json``, else the command's table; returns the
    console the table went to (None under ``--json``) for a closing line."""
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, allow_nan=False) + "\n")
        return None
    from rich.console import Console

    out = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
    print_table(report, out)
    return out
