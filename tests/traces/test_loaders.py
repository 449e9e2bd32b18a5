"""Tests for batchwise.traces.loaders: formats accepted and file:line errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchwise.errors import ConfigError
from batchwise.traces.loaders import (
    BUILTIN_MINUTE_TRACES,
    builtin_minute_counts,
    load_minute_counts,
    load_rps,
    load_timestamps,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    return p


def assert_error_at(exc: pytest.ExceptionInfo[ConfigError], path: Path, line: int) -> None:
    assert str(exc.value).startswith(f"{path}:{line}:"), str(exc.value)


# --- built-in HarmonyBatch traces -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mean_rps"), [("app1", 7.5), ("app2", 15.6), ("app3", 28.7), ("app4", 11.3)]
)
def test_builtin_minute_counts_shape_and_mean(name: str, mean_rps: float) -> None:
    counts = builtin_minute_counts(name)
    assert counts.shape == (120,)
    assert counts.dtype == np.float64
    assert np.all(counts >= 0)
    assert counts.mean() / 60 == pytest.approx(mean_rps, abs=0.1)


def test_builtin_names_are_the_four_apps() -> None:
    assert BUILTIN_MINUTE_TRACES == ("app1", "app2", "app3", "app4")


def test_builtin_unknown_name() -> None:
    with pytest.raises(ConfigError, match="app9"):
        builtin_minute_counts("app9")


# --- per-minute counts ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "1,2,3,4",
        "1,2,3,4,\r\n",
        "1\n2\n3\n4\n",
        "# comment\n1, 2\n\n3,\n4\n",
        "1 2\t3 , 4",
    ],
)
def test_minute_counts_layouts(tmp_path: Path, text: str) -> None:
    counts = load_minute_counts(write(tmp_path, "c.csv", text))
    np.testing.assert_array_equal(counts, [1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("1,2\n3,-4\n", 2, "negative"),
        ("1\n2\nabc\n", 3, "not a number"),
        ("1,nan,3", 1, "not a finite number"),
        ("1,inf", 1, "not a finite number"),
        ("", 1, "empty file"),
        ("\n# only a comment\n\n", 1, "empty file"),
    ],
)
def test_minute_counts_errors(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    p = write(tmp_path, "bad.csv", text)
    with pytest.raises(ConfigError, match=fragment) as exc:
        load_minute_counts(p)
    assert_error_at(exc, p, line)


@pytest.mark.parametrize("loader", [load_minute_counts, load_rps, load_timestamps])
def test_missing_file(tmp_path: Path, loader) -> None:
    p = tmp_path / "nope.txt"
    with pytest.raises(ConfigError, match="file not found") as exc:
        loader(p)
    assert str(p) in str(exc.value)


@pytest.mark.parametrize("loader", [load_minute_counts, load_rps, load_timestamps])
def test_directory_is_an_error(tmp_path: Path, loader) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        loader(tmp_path)


# --- per-second rates -------------------------------------------------------------


def test_rps_dilu_fixture(data_dir: Path) -> None:
    rps = load_rps(data_dir / "rps_bursty.txt")
    assert rps.shape == (858,)
    np.testing.assert_array_equal(rps[:5], [0.8, 1.5, 2.5, 1.5, 2.6])
    assert np.all(rps >= 0)
    assert rps.mean() == pytest.approx(5.6858, abs=1e-3)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("1.0\n2.0 3.0\n", 2, "one rate per line"),
        ("1.0\n2.0,3.0\n", 2, "one rate per line"),
        ("1.0\n\n-0.5\n", 3, "negative"),
        ("1.0\nx\n", 2, "not a number"),
        ("", 1, "empty file"),
    ],
)
def test_rps_errors(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    p = write(tmp_path, "bad.txt", text)
    with pytest.raises(ConfigError, match=fragment) as exc:
        load_rps(p)
    assert_error_at(exc, p, line)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1))
def test_rps_round_trip(tmp_path_factory: pytest.TempPathFactory, values: list[float]) -> None:
    p = tmp_path_factory.mktemp("rps") / "r.txt"
    p.write_text("\n".join(repr(v) for v in values) + "\n")
    np.testing.assert_array_equal(load_rps(p), values)


# --- timestamps -------------------------------------------------------------------


def test_timestamps_azure_fixture(data_dir: Path) -> None:
    t = load_timestamps(data_dir / "azure_conv_head.csv")
    assert t.shape == (2000,)
    assert t[0] == 0.0
    assert np.all(np.diff(t) >= 0)
    # 18:15:50.9951690 - 18:15:46.6805900, 7th digit truncated
    assert t[1] == pytest.approx(4.314579, abs=1e-9)
    # last line 18:22:50.9400470
    assert t[-1] == pytest.approx(424.259457, abs=1e-9)


def test_timestamps_truncate_to_microseconds(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "t.csv",
        "TIMESTAMP,x\n2023-11-16 18:15:46.1234567,1\n2023-11-16 18:15:47.0000009,2\n"
        "2023-11-16T18:15:48,3\n",
    )
    np.testing.assert_allclose(load_timestamps(p), [0.0, 0.876544, 1.876544], atol=1e-9)


def test_timestamps_float_column_by_name_sorted(tmp_path: Path) -> None:
    p = write(tmp_path, "t.csv", "id,Time,size\na,12.5,1\nb,10.0,1\nc,11.25,1\n")
    np.testing.assert_array_equal(load_timestamps(p), [0.0, 1.25, 2.5])


@pytest.mark.parametrize("name", ["t", "time", "timestamp", "TIMESTAMP"])
def test_timestamps_column_names(tmp_path: Path, name: str) -> None:
    p = write(tmp_path, "t.csv", f"other,{name}\n100,3\n200,5\n")
    np.testing.assert_array_equal(load_timestamps(p), [0.0, 2.0])


def test_timestamps_first_column_fallback(tmp_path: Path) -> None:
    p = write(tmp_path, "t.csv", "arrival,tokens\n1.0,500\n3.5,600\n")
    np.testing.assert_array_equal(load_timestamps(p), [0.0, 2.5])


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "empty file"),
        ("TIMESTAMP,x\n", 2, "no timestamps"),
        ("t\n1.0\n-2.0\n", 3, "negative"),
        ("t,x\n1.0,1\nyesterday,2\n", 3, "neither seconds nor a date-time"),
        ("TIMESTAMP,x\n2023-11-16 18:15:46.1,1\n2023-13-16 18:15:46.1,1\n", 3, "date-time"),
        ("x,t\n1,1.0\n2\n", 3, "missing value in column 't'"),
        ("t,x\n1.0,1\n,2\n", 3, "missing value"),
    ],
)
def test_timestamps_errors(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    p = write(tmp_path, "bad.csv", text)
    with pytest.raises(ConfigError, match=fragment) as exc:
        load_timestamps(p)
    assert_error_at(exc, p, line)
