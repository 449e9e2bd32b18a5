"""Latency from a profile's measured allotments: the thread-aware rule, and planners on it."""

from __future__ import annotations

import pytest

from batchwise.config.apps import AppSpec
from batchwise.config.prices import local_price_book
from batchwise.config.profiles import CpuProfile, MeasuredCurve, ModelProfile
from batchwise.perf.functions import Function
from batchwise.perf.kinds import KINDS
from batchwise.perf.latency import LatencyModel, measured_latency
from batchwise.planner import Algorithm, get_planner

# MiniLM on this machine (2026-12-02, batch 8, means): two threads at 1.5 vCPU share their
# quota and are no faster than one thread at 1.0.
CELLS = {0.5: 0.0862, 0.75: 0.0594, 1.0: 0.0437, 1.5: 0.0430, 2.0: 0.0247}
FIT = [[0.1, 0.5, 0.02]] * 8  # an exponential that calls 1.5 vCPU much faster than 1.0


def _curve(v: float, lat: float) -> MeasuredCurve:
    return MeasuredCurve(vcpu=v, threads=max(1, round(v)), batch=[1, 8],
                         avg_s=[lat * 0.9, lat], max_s=[lat, lat * 1.1])  # fmt: skip


def _cpu(cells: dict[float, float] | None = CELLS) -> CpuProfile:
    measured = [_curve(v, lat) for v, lat in cells.items()] if cells else None
    return CpuProfile(avg=FIT, max=FIT, memory_base_mb=100, measured=measured)


def _avg(cpu: CpuProfile, v: float, b: int = 8) -> float:
    return KINDS["cpu"].avg(cpu, Function("cpu", v, 1.0, 0), b)


def test_measured_points_are_returned_as_measured():
    cpu = _cpu()
    for v, lat in CELLS.items():
        assert _avg(cpu, v) == pytest.approx(lat)


def test_a_quota_above_the_threads_buys_nothing():
    """1.2 and 1.4 vCPU run one thread (the vCPU rounded): 1.0's latency, not better."""
    cpu = _cpu()
    assert _avg(cpu, 1.2) == pytest.approx(CELLS[1.0])
    assert _avg(cpu, 1.4) == pytest.approx(CELLS[1.0])


def test_between_allotments_latency_is_linear_in_one_over_vcpu():
    cpu = _cpu()
    w = (1 / 0.6 - 1 / 0.5) / (1 / 0.75 - 1 / 0.5)
    assert _avg(cpu, 0.6) == pytest.approx(CELLS[0.5] + w * (CELLS[0.75] - CELLS[0.5]))
    assert CELLS[2.0] < _avg(cpu, 1.8) < CELLS[1.5]


def test_below_the_smallest_allotment_latency_scales_with_the_quota():
    assert _avg(_cpu(), 0.25) == pytest.approx(CELLS[0.5] * 2)


def test_batch_sizes_between_measured_ones_are_interpolated_and_max_is_at_least_avg():
    cpu = _cpu()
    fn = Function("cpu", 1.0, 1.0, 0)
    upto = KINDS["cpu"].avg_upto(cpu, fn, 8)
    assert upto[0] == pytest.approx(CELLS[1.0] * 0.9) and upto[7] == pytest.approx(CELLS[1.0])
    assert list(upto) == sorted(upto)
    lm = LatencyModel(cpu, None)
    assert all(lm.max(fn, b) >= lm.avg(fn, b) for b in range(1, 9))
    assert lm.max(fn, 8) == pytest.approx(CELLS[1.0] * 1.1)


def test_thread_counts_not_measured_fall_back_to_the_fit():
    cpu = _cpu({0.5: 0.08, 1.0: 0.04})
    assert measured_latency(cpu, 2.0, 8, "avg_s") is None
    fit = FIT[7][0] * 2.718281828 ** (-2.0 / FIT[7][1]) + FIT[7][2]
    assert _avg(cpu, 2.0) == pytest.approx(fit, rel=1e-6)


def test_profiles_of_yesterday_with_unthrottled_read_as_measured_at_their_threads():
    data = {
        "avg": FIT,
        "max": FIT,
        "memory_base_mb": 100,
        "unthrottled": [{"threads": 1, "batch": [1], "avg_s": [0.01], "max_s": [0.02]}],
    }
    (curve,) = CpuProfile.model_validate(data).measured
    assert (curve.vcpu, curve.threads, curve.unthrottled) == (1.0, 1, True)


def test_the_planner_does_not_buy_quota_a_thread_cannot_use():
    """An app whose batches must take <= 40 ms: the fit says 1.2 vCPU does it; measured,
    one thread never goes below 43.7 ms (nor two at 1.5), so the planner buys more than
    1.5; with looser SLOs it never buys 1.1-1.4 (1.0's latency at more cost)."""
    prices = local_price_book(2)
    apps = [AppSpec(name="a", slo=0.040, rate=1.0)]
    on_fit = get_planner(Algorithm.DP).plan(apps, ModelProfile(name="m", cpu=_cpu(None)), prices)
    on_cells = get_planner(Algorithm.DP).plan(apps, ModelProfile(name="m", cpu=_cpu()), prices)
    assert on_fit.groups[0].function.vcpu < 1.5
    g = on_cells.groups[0]
    assert g.function.vcpu > 1.5 and g.latency_max <= 0.040
    for algo in (Algorithm.DP, Algorithm.HARMONY):
        loose = [AppSpec(name=n, slo=s, rate=r) for n, s, r in
                 (("x", 0.3, 2.0), ("y", 0.6, 6.0), ("z", 1.0, 8.0))]  # fmt: skip
        plan = get_planner(algo).plan(loose, ModelProfile(name="m", cpu=_cpu()), prices)
        for grp in plan.groups:
            assert not 1.05 < grp.function.vcpu < 1.45, (algo, grp.function)
