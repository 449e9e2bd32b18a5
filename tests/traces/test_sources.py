"""Tests for batchwise.traces.sources: statistics, invariants, determinism, speed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchwise.traces.base import ArrivalTrace
from batchwise.traces.loaders import builtin_minute_counts, load_rps, load_timestamps
from batchwise.traces.sources import (
    derive_seed,
    from_minute_counts,
    from_rps,
    from_timestamps,
    merge,
    poisson,
    repeat,
    rotate,
    truncate,
)

Check = Callable[[ArrivalTrace], None]


def within_poisson_noise(observed: np.ndarray, expected: np.ndarray, sigmas: float = 5.0) -> bool:
    """Every observed count is within ``sigmas`` standard deviations of its Poisson mean."""
    return bool(np.all(np.abs(observed - expected) <= sigmas * np.sqrt(expected) + 1.0))


# --- poisson ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_poisson_rate_and_gaps(valid: Check, seed: int) -> None:
    rate, duration = 100.0, 600.0
    trace = poisson({"a": rate, "b": 2.5}, duration, seed)
    valid(trace)
    assert trace.duration_s == duration
    assert trace.mean_rate("a") == pytest.approx(rate, rel=0.05)
    assert within_poisson_noise(np.array([trace.count("a")]), np.array([rate * duration]))
    assert within_poisson_noise(np.array([trace.count("b")]), np.array([2.5 * duration]))
    gaps = np.diff(trace.arrivals["a"])
    # exponential gaps: mean 1/rate, coefficient of variation 1
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


def test_poisson_deterministic_and_seed_sensitive() -> None:
    a = poisson({"x": 10.0}, 100.0, 7)
    b = poisson({"x": 10.0}, 100.0, 7)
    c = poisson({"x": 10.0}, 100.0, 8)
    np.testing.assert_array_equal(a.arrivals["x"], b.arrivals["x"])
    assert not np.array_equal(a.arrivals["x"], c.arrivals["x"])


def test_poisson_app_stream_independent_of_other_apps() -> None:
    alone = poisson({"x": 10.0}, 100.0, 3)
    together = poisson({"w": 5.0, "x": 10.0, "y": 1.0}, 100.0, 3)
    np.testing.assert_array_equal(alone.arrivals["x"], together.arrivals["x"])
    assert not np.array_equal(together.arrivals["w"][:10], together.arrivals["x"][:10])


def test_poisson_zero_rate_and_bad_args() -> None:
    assert poisson({"z": 0.0}, 10.0, 0).count("z") == 0
    with pytest.raises(ValueError):
        poisson({"a": -1.0}, 10.0, 0)
    with pytest.raises(ValueError):
        poisson({"a": 1.0}, 0.0, 0)
    with pytest.raises(ValueError):
        derive_seed(-1, "a")


@settings(max_examples=40, deadline=None)
@given(
    rates=st.dictionaries(
        st.text(min_size=1, max_size=5), st.floats(0, 50, allow_nan=False), max_size=3
    ),
    duration=st.floats(0.01, 200, allow_nan=False),
    seed=st.integers(0, 2**32 - 1),
)
def test_poisson_invariants(
    valid: Check, rates: dict[str, float], duration: float, seed: int
) -> None:
    trace = poisson(rates, duration, seed)
    valid(trace)
    assert set(trace.arrivals) == set(rates)


# --- per-minute counts and per-second rates ---------------------------------------


@pytest.mark.parametrize("name", ["app1", "app3", "app4"])
def test_minute_counts_follow_the_shape(valid: Check, name: str) -> None:
    counts = builtin_minute_counts(name)
    trace = from_minute_counts("a", counts, seed=11)
    valid(trace)
    assert trace.duration_s == 120 * 60
    per_minute = np.bincount((trace.arrivals["a"] // 60).astype(int), minlength=120)
    assert per_minute.size == 120
    assert within_poisson_noise(per_minute, counts)
    assert trace.count("a") == pytest.approx(counts.sum(), rel=0.02)


def test_minute_counts_scale() -> None:
    counts = np.array([600.0, 0.0, 1200.0])
    trace = from_minute_counts("a", counts, seed=5, scale=2.5)
    per_minute = np.bincount((trace.arrivals["a"] // 60).astype(int), minlength=3)
    assert per_minute[1] == 0
    assert within_poisson_noise(per_minute, counts * 2.5)
    assert from_minute_counts("a", counts, seed=5, scale=0.0).count("a") == 0


def test_minute_counts_deterministic() -> None:
    counts = builtin_minute_counts("app2")[:10]
    a = from_minute_counts("a", counts, seed=1)
    b = from_minute_counts("a", counts, seed=1)
    c = from_minute_counts("a", counts, seed=2)
    np.testing.assert_array_equal(a.arrivals["a"], b.arrivals["a"])
    assert not np.array_equal(a.arrivals["a"], c.arrivals["a"])


def test_rps_follows_the_shape(valid: Check, data_dir: Path) -> None:
    series = load_rps(data_dir / "rps_bursty.txt")
    trace = from_rps("a", series, seed=4, scale=10.0)
    valid(trace)
    assert trace.duration_s == series.size
    per_second = np.bincount(trace.arrivals["a"].astype(int), minlength=series.size)
    assert within_poisson_noise(per_second, series * 10.0)
    # the bursts are where the input says they are
    assert np.corrcoef(per_second, series)[0, 1] > 0.9


@pytest.mark.parametrize(
    "bad", [[], [[1.0, 2.0]], [1.0, -1.0], [1.0, float("nan")], [float("inf")]]
)
def test_rate_series_rejects_bad_input(bad: list) -> None:
    with pytest.raises(ValueError):
        from_rps("a", bad, seed=0)
    with pytest.raises(ValueError):
        from_minute_counts("a", bad, seed=0)


@settings(max_examples=40, deadline=None)
@given(
    series=st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=20),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(0, 4, allow_nan=False),
)
def test_series_invariants(valid: Check, series: list[float], seed: int, scale: float) -> None:
    a = from_rps("a", series, seed, scale)
    m = from_minute_counts("m", series, seed, scale)
    valid(a)
    valid(m)
    assert a.duration_s == len(series)
    assert m.duration_s == 60 * len(series)
    zero = np.flatnonzero(np.asarray(series) * scale == 0)
    assert not np.isin(a.arrivals["a"].astype(int), zero).any()


def test_one_hour_at_100_rps_is_fast() -> None:
    start = time.perf_counter()
    p = poisson({"a": 100.0}, 3600.0, seed=0)
    r = from_rps("b", np.full(3600, 100.0), seed=0)
    m = from_minute_counts("c", np.full(60, 6000.0), seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    for trace, app in ((p, "a"), (r, "b"), (m, "c")):
        assert trace.mean_rate(app) == pytest.approx(100.0, rel=0.01)


# --- timestamps replay ------------------------------------------------------------


def test_timestamps_exact_replay(valid: Check, data_dir: Path) -> None:
    times = load_timestamps(data_dir / "azure_conv_head.csv")
    trace = from_timestamps("a", times)
    valid(trace)
    np.testing.assert_array_equal(trace.arrivals["a"], times)
    assert trace.duration_s == np.floor(times[-1]) + 1


def test_timestamps_scale_compresses_time(valid: Check) -> None:
    times = np.array([3.0, 0.0, 1.0, 7.5])
    fast = from_timestamps("a", times, scale=2.0)
    valid(fast)
    np.testing.assert_array_equal(fast.arrivals["a"], [0.0, 0.5, 1.5, 3.75])
    assert fast.duration_s == 4.0
    assert fast.mean_rate("a") == pytest.approx(2 * from_timestamps("a", times).mean_rate("a"))
    given_len = from_timestamps("a", times, scale=0.5, duration_s=10.0)
    assert given_len.duration_s == 20.0


def test_timestamps_bad_input() -> None:
    with pytest.raises(ValueError):
        from_timestamps("a", [1.0, -0.5])
    with pytest.raises(ValueError):
        from_timestamps("a", [1.0], scale=0.0)
    with pytest.raises(ValueError):
        from_timestamps("a", [1.0, 5.0], duration_s=5.0)
    assert from_timestamps("a", []).count() == 0


# --- combinators ------------------------------------------------------------------


def test_merge_unions_apps_and_superposes(valid: Check) -> None:
    a = ArrivalTrace({"x": np.array([0.5, 2.0]), "y": np.array([1.0])}, 3.0)
    b = ArrivalTrace({"x": np.array([1.5]), "z": np.array([9.0])}, 10.0)
    m = merge([a, b])
    valid(m)
    assert m.duration_s == 10.0
    np.testing.assert_array_equal(m.arrivals["x"], [0.5, 1.5, 2.0])
    np.testing.assert_array_equal(m.arrivals["y"], [1.0])
    np.testing.assert_array_equal(m.arrivals["z"], [9.0])
    assert merge([]) == ArrivalTrace({}, 0.0)


def test_truncate(valid: Check) -> None:
    trace = poisson({"a": 20.0, "b": 1.0}, 100.0, seed=9)
    cut = truncate(trace, 40.0)
    valid(cut)
    assert cut.duration_s == 40.0
    for app, times in trace.arrivals.items():
        np.testing.assert_array_equal(cut.arrivals[app], times[times < 40.0])
    with pytest.raises(ValueError):
        truncate(trace, 100.5)


def test_repeat_is_periodic(valid: Check) -> None:
    base = from_timestamps("a", [0.0, 0.25, 2.5], duration_s=3.0)
    long = repeat(base, 7.0)
    valid(long)
    assert long.duration_s == 7.0
    np.testing.assert_allclose(long.arrivals["a"], [0, 0.25, 2.5, 3, 3.25, 5.5, 6, 6.25])


@settings(max_examples=30, deadline=None)
@given(offset=st.floats(-1e3, 1e3, allow_nan=False), seed=st.integers(0, 1000))
def test_rotate_keeps_count_and_invariants(valid: Check, offset: float, seed: int) -> None:
    trace = poisson({"a": 5.0}, 30.0, seed)
    turned = rotate(trace, offset)
    valid(turned)
    assert turned.count("a") == trace.count("a")
    assert turned.duration_s == trace.duration_s
