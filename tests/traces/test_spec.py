"""Tests for batchwise.traces.spec: the --trace grammar, rescaling and its errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from batchwise.errors import ConfigError
from batchwise.traces.base import ArrivalTrace
from batchwise.traces.loaders import builtin_minute_counts, load_rps, load_timestamps
from batchwise.traces.spec import (
    DEFAULT_POISSON_DURATION_S,
    TraceKind,
    build_trace,
    parse_spec,
)

Check = Callable[[ArrivalTrace], None]


def within_poisson_noise(count: int, expected: float, sigmas: float = 5.0) -> bool:
    return abs(count - expected) <= sigmas * np.sqrt(expected) + 1.0


# --- grammar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "app", "kind", "source"),
    [
        ("poisson", None, TraceKind.POISSON, None),
        ("a=poisson", "a", TraceKind.POISSON, None),
        ("minute:app1", None, TraceKind.MINUTE, "app1"),
        ("vgg=minute:app3", "vgg", TraceKind.MINUTE, "app3"),
        (" b = rps:data/x.txt ", "b", TraceKind.RPS, "data/x.txt"),
        ("timestamps:/tmp/a=b.csv", None, TraceKind.TIMESTAMPS, "/tmp/a=b.csv"),
        ("minute:C:\\traces\\x.csv", None, TraceKind.MINUTE, "C:\\traces\\x.csv"),
        ("RPS:x.txt", None, TraceKind.RPS, "x.txt"),
    ],
)
def test_parse_spec(text: str, app: str | None, kind: TraceKind, source: str | None) -> None:
    spec = parse_spec(text)
    assert (spec.app, spec.kind, spec.source, spec.text) == (app, kind, source, text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "malformed"),
        ("=minute:app1", "malformed"),
        ("a==minute:app1", "malformed"),
        ("weibull:x.csv", "unknown kind 'weibull'"),
        ("a=bursty", "unknown kind 'bursty'"),
        ("minute", "needs a source"),
        ("a=rps:", "needs a source"),
        ("poisson:10", "takes no source"),
        (" =poisson", "malformed"),
        ("a=b=poisson", "malformed"),
    ],
)
def test_parse_spec_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as exc:
        parse_spec(text)
    assert repr(text) in str(exc.value)


# --- poisson ----------------------------------------------------------------------


@pytest.mark.parametrize("specs", [["poisson"], []])
def test_poisson_default(valid: Check, specs: list[str]) -> None:
    rates = {"a": 20.0, "b": 50.0, "idle": 0.0}
    trace = build_trace(specs, rates, seed=1, duration_s=None)
    valid(trace)
    assert trace.duration_s == DEFAULT_POISSON_DURATION_S
    assert set(trace.arrivals) == set(rates)
    for app, rate in rates.items():
        assert within_poisson_noise(trace.count(app), rate * trace.duration_s)
        assert trace.mean_rate(app) == pytest.approx(rate, rel=0.05, abs=1e-9)


def test_seed_determinism(data_dir: Path) -> None:
    specs = ["minute:app2", f"b=rps:{data_dir / 'rps_bursty.txt'}"]
    rates = {"a": 3.0, "b": 1.0, "c": 4.0}
    one = build_trace(specs, rates, seed=5, duration_s=300.0)
    two = build_trace(specs, rates, seed=5, duration_s=300.0)
    other = build_trace(specs, rates, seed=6, duration_s=300.0)
    for app in rates:
        np.testing.assert_array_equal(one.arrivals[app], two.arrivals[app])
        assert not np.array_equal(one.arrivals[app], other.arrivals[app])


# --- rescaling without APP= -------------------------------------------------------


def test_minute_shape_rescaled_to_planned_rates(valid: Check) -> None:
    rates = {"a": 5.0, "b": 40.0}
    trace = build_trace(["minute:app4"], rates, seed=2, duration_s=None)
    valid(trace)
    assert trace.duration_s == 120 * 60
    shape = builtin_minute_counts("app4")
    for app, rate in rates.items():
        assert trace.mean_rate(app) == pytest.approx(rate, rel=0.03)
        per_minute = np.bincount((trace.arrivals[app] // 60).astype(int), minlength=120)
        expected = shape * rate / (shape.mean() / 60)
        assert np.all(np.abs(per_minute - expected) <= 5 * np.sqrt(expected) + 1)


def test_apps_with_equal_rates_are_not_identical(data_dir: Path) -> None:
    rates = {"a": 2.0, "b": 2.0}
    for spec in ("minute:app1", f"timestamps:{data_dir / 'azure_conv_head.csv'}"):
        trace = build_trace([spec], rates, seed=0, duration_s=None)
        assert not np.array_equal(trace.arrivals["a"], trace.arrivals["b"]), spec


def test_rps_shape_rescaled_and_repeated(valid: Check, data_dir: Path) -> None:
    path = data_dir / "rps_bursty.txt"
    series = load_rps(path)
    rates = {"a": 30.0}
    full = build_trace([f"rps:{path}"], rates, seed=3, duration_s=None)
    valid(full)
    assert full.duration_s == series.size
    assert full.mean_rate("a") == pytest.approx(30.0, rel=0.03)
    # 3 whole periods: still the planned rate, and the bursts recur each period
    longer = build_trace([f"rps:{path}"], rates, seed=3, duration_s=3.0 * series.size)
    valid(longer)
    assert longer.mean_rate("a") == pytest.approx(30.0, rel=0.03)
    per_second = np.bincount(longer.arrivals["a"].astype(int), minlength=3 * series.size)
    assert np.corrcoef(per_second, np.tile(series, 3))[0, 1] > 0.9


def test_timestamps_shape_rescaled_exactly(valid: Check, data_dir: Path) -> None:
    path = data_dir / "azure_conv_head.csv"
    times = load_timestamps(path)
    length = np.floor(times[-1]) + 1
    source_rate = times.size / length
    # scale 2 and 4: the window (the source's length) holds whole rescaled periods
    rates = {"a": 2 * source_rate, "b": 4 * source_rate}
    trace = build_trace([f"timestamps:{path}"], rates, seed=0, duration_s=None)
    valid(trace)
    assert trace.duration_s == length
    assert trace.count("a") == 2 * times.size
    assert trace.count("b") == 4 * times.size
    assert trace.mean_rate("a") == pytest.approx(rates["a"])


def test_zero_planned_rate_gets_no_arrivals(data_dir: Path) -> None:
    path = data_dir / "azure_conv_head.csv"
    trace = build_trace([f"timestamps:{path}"], {"a": 0.0, "b": 1.0}, seed=0, duration_s=60)
    assert trace.count("a") == 0
    assert trace.count("b") > 0


# --- APP= drives one app as-is ----------------------------------------------------


def test_named_specs_are_used_as_is(valid: Check, data_dir: Path) -> None:
    ts = data_dir / "azure_conv_head.csv"
    rates = {"a": 1.0, "b": 1.0, "c": 3.0, "d": 7.0}
    specs = ["a=minute:app2", f"b=timestamps:{ts}", "c=poisson", "poisson"]
    trace = build_trace(specs, rates, seed=4, duration_s=None)
    valid(trace)
    assert trace.duration_s == 120 * 60  # the longest source
    # app2's own rate (≈15.6 req/s), not the planned 1.0
    assert trace.mean_rate("a") == pytest.approx(
        builtin_minute_counts("app2").mean() / 60, rel=0.03
    )
    # exact replay, repeated to fill the longer trace
    times = load_timestamps(ts)
    np.testing.assert_array_equal(trace.arrivals["b"][: times.size], times)
    for app in ("c", "d"):
        assert trace.mean_rate(app) == pytest.approx(rates[app], rel=0.05)


def test_duration_cuts_every_app(valid: Check) -> None:
    trace = build_trace(["a=minute:app1", "poisson"], {"a": 1.0, "b": 2.0}, 0, duration_s=90.0)
    valid(trace)
    assert trace.duration_s == 90.0
    assert trace.arrivals["a"][-1] < 90.0
    assert within_poisson_noise(trace.count("b"), 180.0)


# --- errors -----------------------------------------------------------------------


def assert_config_error(specs: list[str], fragment: str, rates: dict[str, float] | None = None):
    with pytest.raises(ConfigError, match=re.escape(fragment)) as exc:
        build_trace(specs, rates or {"a": 1.0, "b": 2.0}, seed=0, duration_s=None)
    return str(exc.value)


def test_unknown_app() -> None:
    msg = assert_config_error(["zz=poisson", "poisson"], "unknown app 'zz'")
    assert "'zz=poisson'" in msg and "a, b" in msg


def test_app_named_twice() -> None:
    assert_config_error(["a=poisson", "a=minute:app1", "poisson"], "'a=minute:app1'")


def test_two_default_specs() -> None:
    assert_config_error(["poisson", "minute:app1"], "only one spec may omit APP=")


def test_app_not_driven() -> None:
    assert_config_error(["a=poisson"], "no trace spec drives app(s) b")


def test_malformed_spec_in_list() -> None:
    assert_config_error(["poisson", "a=gamma:3"], "trace spec 'a=gamma:3': unknown kind")


def test_missing_file_names_spec_and_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.txt"
    msg = assert_config_error([f"rps:{path}"], "file not found")
    assert f"'rps:{path}'" in msg and str(path) in msg


def test_bad_file_names_spec_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_text("10,20\n30,oops\n")
    assert_config_error([f"a=minute:{path}", "poisson"], f"{path}:2: 'oops' is not a number")


def test_unused_default_spec_is_still_checked(tmp_path: Path) -> None:
    assert_config_error(["a=poisson", "b=poisson", f"minute:{tmp_path / 'x'}"], "not found")


def test_unknown_builtin_is_a_missing_file() -> None:
    assert_config_error(["minute:app7"], "app7")


def test_empty_source_cannot_be_rescaled(tmp_path: Path) -> None:
    path = tmp_path / "zeros.txt"
    path.write_text("0\n0\n")
    assert_config_error([f"rps:{path}"], "source has no requests")


@pytest.mark.parametrize(
    ("rates", "duration", "fragment"),
    [
        ({"a": -1.0}, None, "planned rate of app 'a'"),
        ({"a": float("nan")}, None, "planned rate of app 'a'"),
        ({"a": 1.0}, 0.0, "duration must be"),
        ({"a": 1.0}, float("inf"), "duration must be"),
        ({"a": 1.0}, float("nan"), "duration must be"),
        ({"a": 1e6}, 1e6, "the limit is 10,000,000"),
    ],
)
def test_bad_rates_and_duration(
    rates: dict[str, float], duration: float | None, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        build_trace(["poisson"], rates, seed=0, duration_s=duration)


def test_negative_seed() -> None:
    with pytest.raises(ConfigError, match="seed"):
        build_trace(["poisson"], {"a": 1.0}, seed=-1, duration_s=None)
