"""The CFS quota model: full speed until the period's quota is spent, nothing carried over."""

from __future__ import annotations

import pytest

from batchwise.perf.cfs import CfsBandwidth, instance_threads


def test_a_batch_after_an_idle_spell_runs_at_full_speed_within_the_quota():
    q = CfsBandwidth(0.8)  # 80 ms per 100 ms
    assert q.run(0.0, 0.04) == pytest.approx(0.04)
    assert q.run(0.35, 0.07) == pytest.approx(0.42)  # fresh period, 70 ms < 80 ms


def test_the_quota_spent_waits_for_the_next_period():
    q = CfsBandwidth(0.8)
    assert q.run(0.0, 0.05) == pytest.approx(0.05)
    # 30 ms left in this period, then throttled until 0.1, then 20 ms more.
    assert q.run(0.05, 0.05) == pytest.approx(0.12)
    # The period of 0.1-0.2 has 60 ms left: a 60 ms batch fits, a 61st ms waits for 0.2.
    assert q.run(0.12, 0.06) == pytest.approx(0.18)
    assert q.run(0.18, 0.001) == pytest.approx(0.201)


def test_a_long_batch_averages_the_quota_rate():
    q = CfsBandwidth(0.5)
    # 50 ms of progress per 100 ms: 1 s of work ends 50 ms into the 20th period.
    assert q.run(0.0, 1.0) == pytest.approx(1.95)
    # and the period's quota is spent: the next batch waits for 2.0.
    assert q.run(1.95, 0.01) == pytest.approx(2.01)


def test_batches_back_to_back_average_the_quota_rate():
    q = CfsBandwidth(0.8)
    t = 0.0
    for _ in range(200):
        t = q.run(t, 0.043)
    assert t == pytest.approx(200 * 0.043 / 0.8, rel=0.02)


def test_several_threads_spend_the_quota_faster():
    q = CfsBandwidth(1.5, threads=2)  # 150 ms of CPU per period = 75 ms of 2 threads
    assert q.run(0.0, 0.1) == pytest.approx(0.125)
    assert CfsBandwidth(2.0, threads=2).run(0.0, 0.1) == pytest.approx(0.1)  # never binds


def test_period_boundaries_follow_the_phase():
    q = CfsBandwidth(0.5, phase_s=0.03)  # boundaries at 0.03, 0.13, ...
    assert q.run(0.0, 0.04) == pytest.approx(0.04)  # 30 ms to 0.03, then a fresh quota
    q = CfsBandwidth(0.5, phase_s=0.03)
    assert q.run(0.03, 0.06) == pytest.approx(0.14)  # 50 ms, wait to 0.13, 10 ms


def test_a_quota_at_or_over_the_threads_never_throttles():
    assert CfsBandwidth(1.0).unlimited and not CfsBandwidth(0.99).unlimited
    assert CfsBandwidth(1.0).run(3.0, 5.0) == pytest.approx(8.0)


def test_bad_bandwidths_are_refused():
    for kw in ({"vcpu": 0.0}, {"vcpu": 0.5, "threads": 0}, {"vcpu": 0.5, "period_s": 0.0}):
        with pytest.raises(ValueError):
            CfsBandwidth(**kw)


def test_instances_run_their_vcpu_rounded_in_threads_at_least_one():
    assert [instance_threads(v) for v in (0.25, 0.8, 1.0, 1.4, 1.6, 3.0)] == [1, 1, 1, 1, 2, 3]
