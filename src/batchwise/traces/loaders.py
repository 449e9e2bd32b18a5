"""Read arrival data files into numpy arrays, with errors that name file and line.

Why: trace files are downloaded or hand-edited; a bare ``ValueError`` from numpy
says nothing about which of ten thousand lines is wrong. Every reader here walks
the text once, so it can point at ``path:LINE`` for each bad value, and raises
:class:`~batchwise.errors.ConfigError` (shown to the user without a traceback).
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np

from batchwise.config.loader import read_text
from batchwise.errors import ConfigError

BUILTIN_MINUTE_TRACES: tuple[str, ...] = ("app1", "app2", "app3", "app4")
"""Names of the shipped HarmonyBatch per-minute count traces (``traces/data/*.csv``)."""

TIMESTAMP_COLUMNS: tuple[str, ...] = ("timestamp", "time", "t")
"""Header names (case-insensitive, in order of preference) taken as the time column."""

# Azure writes 7 fractional digits (100 ns ticks); datetime holds 6. Truncating to
# microseconds is exact enough for arrival times and independent of Python's parser.
_FRACTION = re.compile(r"(\.\d{6})\d+")
_SPLIT = re.compile(r"[,\s]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _read_text(path: str | Path) -> tuple[Path, str]:
    text, _ = read_text(path)  # the config loader's size limit and error messages
    return Path(path), text


def _number(token: str, where: str, what: str) -> float:
    """Parse one non-negative finite number; ``where`` is ``path:LINE``."""
    try:
        value = float(token)
    except ValueError:
        raise ConfigError(f"{where}: {token!r} is not a number ({what})") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {token!r} is not a finite number ({what})")
    if value < 0:
        raise ConfigError(f"{where}: {token!r} is negative ({what} must be >= 0)")
    return value


def _data_lines(text: str) -> list[tuple[int, str]]:
    """Non-blank, non-comment lines with their 1-based line numbers."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append((lineno, line))
    return out


def load_minute_counts(path: str | Path) -> np.ndarray:
    """Per-minute request counts as float64, one entry per minute.

    Accepts the HarmonyBatch layout (one line of comma-separated integers), one
    value per line, or a mix; commas and whitespace both separate values, a
    trailing comma is ignored, and ``#`` starts a comment line. Values may be
    fractional (they are used as Poisson rates, not exact counts).
    """
    p, text = _read_text(path)
    values: list[float] = []
    for lineno, line in _data_lines(text):
        for token in _SPLIT.split(line):
            if token:
                values.append(_number(token, f"{p}:{lineno}", "requests per minute"))
    if not values:
        raise ConfigError(f"{p}:1: empty file, expected per-minute request counts")
    return np.asarray(values, dtype=np.float64)


def load_rps(path: str | Path) -> np.ndarray:
    """Per-second request rates as float64: one number per line (Dilu's layout)."""
    p, text = _read_text(path)
    values: list[float] = []
    for lineno, line in _data_lines(text):
        where = f"{p}:{lineno}"
        if len(_SPLIT.split(line)) != 1:
            raise ConfigError(f"{where}: expected one rate per line, got {line!r}")
        values.append(_number(line, where, "requests per second"))
    if not values:
        raise ConfigError(f"{p}:1: empty file, expected one request rate per line")
    return np.asarray(values, dtype=np.float64)


def _time_column(header: list[str]) -> int:
    names = [h.strip().lower() for h in header]
    for wanted in TIMESTAMP_COLUMNS:
        if wanted in names:
            return names.index(wanted)
    return 0


def _timestamp_us(token: str, where: str) -> int:
    """One timestamp in integer microseconds: plain seconds or an ISO date-time.

    Integers keep full precision: epoch seconds in float64 resolve only ~0.2 µs,
    and we subtract the (large) first timestamp afterwards.
    """
    try:
        float(token)
    except ValueError:
        pass
    else:
        return round(_number(token, where, "timestamp in seconds") * 1_000_000)
    try:
        dt = datetime.fromisoformat(_FRACTION.sub(r"\1", token))
    except ValueError:
        raise ConfigError(
            f"{where}: {token!r} is neither seconds nor a date-time like "
            "'2023-11-16 18:15:46.680590'"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # naive times: only differences matter
    return (dt - _EPOCH) // _MICROSECOND


def load_timestamps(path: str | Path) -> np.ndarray:
    """Request times in seconds since the earliest request, sorted, as float64.

    The file is a CSV with a header. The time column is the first one named
    ``TIMESTAMP``/``timestamp``/``time``/``t`` (any case), else the first column.
    Values are plain seconds (any origin) or ISO date-times such as Azure's
    ``2023-11-16 18:15:46.6805900``; digits past microseconds are truncated.
    """
    p, text = _read_text(path)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(reader, None)  # skip leading blank lines
    if header is None:
        raise ConfigError(f"{p}:1: empty file, expected a CSV header and timestamps")
    col = _time_column(header)
    micros: list[int] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"{p}:{reader.line_num}"
        if col >= len(row) or not row[col].strip():
            raise ConfigError(f"{where}: missing value in column {header[col].strip()!r}")
        micros.append(_timestamp_us(row[col].strip(), where))
    if not micros:
        raise ConfigError(f"{p}:{reader.line_num + 1}: no timestamps after the header")
    us = np.sort(np.asarray(micros, dtype=np.int64))
    return (us - us[0]).astype(np.float64) / 1e6


def builtin_minute_counts(name: str) -> np.ndarray:
    """The shipped HarmonyBatch per-minute counts ``app1`` … ``app4`` (120 minutes each)."""
    if name not in BUILTIN_MINUTE_TRACES:
        known = ", ".join(BUILTIN_MINUTE_TRACES)
        raise ConfigError(f"unknown built-in trace {name!r} (known: {known})")
    resource = resources.files("batchwise.traces").joinpath("data", f"{name}.csv")
    with resources.as_file(resource) as p:
        return load_minute_counts(p)
