"""Checks shared by the commands' numeric options.

Why one place: every command bounds its numbers (a NaN, an inf or a negative duration
must be one exit-2 line naming the option, never a hang or a traceback), and three
commands had grown their own copy of the same test.
"""

from __future__ import annotations

from batchwise.errors import ConfigError


def in_range(option: str, value: float, low: float, high: float, low_open: bool = False) -> float:
    """``value`` when it lies in ``[low, high]`` (``(low, high]`` with ``low_open``).

    NaN fails both comparisons, so it is refused like any out-of-range number.
    """
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        lo = "(" if low_open else "["
        raise ConfigError(f"must be a number in {lo}{low:g}, {high:g}], got {value}", field=option)
    return value
