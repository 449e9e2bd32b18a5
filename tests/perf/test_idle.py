"""The idle-slowdown rule: a batch after an idle spell takes the profile's factor."""

from __future__ import annotations

import pytest

from batchwise.config.profiles import IdlePoint, IdleSlowdown
from batchwise.perf.idle import IDLE_AFTER_S, fit_idle, idle_factor

SPEC = IdleSlowdown(after_s=0.025, points=[
    IdlePoint(threads=1, batch=1, factor=1.1), IdlePoint(threads=1, batch=8, factor=1.2),
    IdlePoint(threads=2, batch=1, factor=1.5), IdlePoint(threads=2, batch=8, factor=1.1),
])  # fmt: skip


def test_no_slowdown_back_to_back_or_without_a_measurement():
    assert idle_factor(SPEC, 1, 4, 0.0) == 1.0
    assert idle_factor(SPEC, 1, 4, 0.0249) == 1.0
    assert idle_factor(None, 1, 4, 10.0) == 1.0


def test_after_an_idle_spell_the_factor_is_interpolated_over_batch_sizes():
    assert idle_factor(SPEC, 1, 1, 0.2) == pytest.approx(1.1)
    assert idle_factor(SPEC, 2, 1, 0.025) == pytest.approx(1.5)
    assert idle_factor(SPEC, 1, 4.5, 1.0) == pytest.approx(1.15)  # halfway from 1 to 8
    assert idle_factor(SPEC, 2, 32, 1.0) == pytest.approx(1.1)  # beyond: the last measured


def test_an_unmeasured_thread_count_takes_the_nearest_measured():
    assert idle_factor(SPEC, 3, 1, 1.0) == pytest.approx(1.5)  # 2 threads'
    assert idle_factor(SPEC, 8, 8, 1.0) == pytest.approx(1.1)


def test_fit_takes_median_ratios_of_pairs_and_never_a_speed_up():
    pairs = {
        1: {
            1: [(0.012, 0.010), (0.013, 0.010), (0.050, 0.010)],  # one outlier
            8: [(0.038, 0.040), (0.039, 0.040)],
        }
    }  # idle "faster": noise
    spec = fit_idle(pairs)
    assert spec is not None and spec.after_s == IDLE_AFTER_S
    f = {(p.threads, p.batch): p.factor for p in spec.points}
    assert f == {(1, 1): pytest.approx(1.3), (1, 8): 1.0}
    assert fit_idle({}) is None and fit_idle({1: {1: []}}) is None


def test_unthrottled_work_is_the_measured_curve_interpolated_not_the_fit():
    from batchwise.config.profiles import CpuProfile, MeasuredCurve
    from batchwise.perf.latency import unthrottled

    cpu = CpuProfile(avg=[[0.1, 1.0, 0.01]] * 4, max=[[0.1, 1.0, 0.02]] * 4, memory_base_mb=1,
                     measured=[MeasuredCurve(vcpu=1.0, threads=1, batch=[1, 4],
                                             avg_s=[0.01, 0.04], max_s=[0.012, 0.03]),
                               MeasuredCurve(vcpu=1.5, threads=2, batch=[1], avg_s=[0.009],
                                             max_s=[0.01])])  # fmt: skip
    assert unthrottled(cpu, 1, 1) == pytest.approx((0.01, 0.012))
    assert unthrottled(cpu, 1, 2) == pytest.approx((0.02, 0.02))  # max never below avg
    assert unthrottled(cpu, 2, 1) is None  # 1.5 vCPU throttles two threads: not full speed
    with pytest.raises(ValueError, match="increasing"):
        MeasuredCurve(vcpu=1, threads=1, batch=[4, 1], avg_s=[0.1, 0.1], max_s=[0.1, 0.1])
