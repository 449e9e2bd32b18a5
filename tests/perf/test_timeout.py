"""Equivalent timeout (Eq. 5), its pairwise folding, and batch reachability."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchwise.perf.timeout import equivalent_timeout, max_reachable_batch


def test_eq5_two_apps_by_hand():
    # t1 = 0.2 s at 5 req/s, t2 = 0.5 s at 10 req/s:
    # T = t1 + r2/(r1+r2) * (1 - e^{-r1 (t2 - t1)}) / r1
    #   = 0.2 + (10/15) * (1 - e^{-1.5}) / 5 = 0.2 + 0.6667 * 0.7769 / 5
    want = 0.2 + (10 / 15) * (1 - math.exp(-5 * 0.3)) / 5
    assert want == pytest.approx(0.3035826, abs=1e-7)
    t_eq, r = equivalent_timeout([0.2, 0.5], [5, 10])
    assert t_eq == pytest.approx(want, rel=1e-12)
    assert r == 15
    # Order of the inputs does not matter (apps are sorted by timeout).
    assert equivalent_timeout([0.5, 0.2], [10, 5]) == (t_eq, r)


def test_eq5_three_apps_fold_pairwise():
    # Fold (0.2 s, 5) with (0.5 s, 10) into (T12, 15), then with (0.7 s, 20).
    t12 = 0.2 + (10 / 15) * (1 - math.exp(-5 * (0.5 - 0.2))) / 5
    want = t12 + (20 / 35) * (1 - math.exp(-15 * (0.7 - t12))) / 15
    t_eq, r = equivalent_timeout([0.7, 0.2, 0.5], [20, 5, 10])
    assert t_eq == pytest.approx(want, rel=1e-12)
    assert r == 35


def test_tightest_formula_is_the_minimum_timeout():
    assert equivalent_timeout([0.7, 0.2, 0.5], [20, 5, 10], "tightest") == (0.2, 35.0)


def test_single_app_and_equal_timeouts():
    assert equivalent_timeout([0.3], [4.0]) == (0.3, 4.0)
    t_eq, r = equivalent_timeout([0.3, 0.3], [4.0, 6.0])
    assert t_eq == pytest.approx(0.3) and r == 10.0


def test_invalid_inputs_raise():
    with pytest.raises(ValueError):
        equivalent_timeout([], [])
    with pytest.raises(ValueError):
        equivalent_timeout([0.1, 0.2], [1.0])


@given(
    st.lists(st.tuples(st.floats(0.0, 3.0), st.floats(0.05, 50.0)), min_size=1, max_size=8),
    st.floats(0.0, 1.0),
)
def test_eq5_bounds_and_translation(pairs, shift):
    ts = [t for t, _ in pairs]
    rs = [r for _, r in pairs]
    t_eq, r = equivalent_timeout(ts, rs)
    # Between the tightest and the loosest timeout; total rate adds up.
    assert min(ts) - 1e-12 <= t_eq <= max(ts) + 1e-12
    assert r == pytest.approx(sum(rs))
    # Shifting every timeout shifts T_eq (what lets planners fold SLOs once).
    t_shift, _ = equivalent_timeout([t + shift for t in ts], rs)
    assert t_shift == pytest.approx(t_eq + shift, abs=1e-9)


def test_reachability_is_floor_r_t_plus_one():
    # R = 35 req/s, T = 0.30358 s: floor(10.63) + 1 = 11.
    assert max_reachable_batch(35.0, 0.3035826) == math.floor(35.0 * 0.3035826) + 1 == 11
    assert max_reachable_batch(10.0, 0.05) == 1  # floor(0.5) + 1
    assert max_reachable_batch(10.0, 0.1) == 2  # exactly one more arrival fits
    # Float noise: 100 * 0.29 = 28.999999999999996 must still count as 29.
    assert max_reachable_batch(100.0, 0.29) == 30
    assert max_reachable_batch(5.0, 0.0) == 1
    assert max_reachable_batch(0.0, 1.0) == 1
    assert max_reachable_batch(5.0, -0.1) == 1
