"""Retry policy: bounded attempts, exponential capped backoff."""

from __future__ import annotations

import pytest

from batchwise.batch.retry import RetryDecision, RetryPolicy, compute_backoff


def test_compute_backoff_doubles_and_caps():
    assert [compute_backoff(a, 500, 3000) for a in range(1, 6)] == [500, 1000, 2000, 3000, 3000]
    with pytest.raises(ValueError):
        compute_backoff(0, 500, 3000)


def test_policy_retries_until_max_attempts_then_quarantines():
    p = RetryPolicy(max_attempts=3, min_backoff_ms=1000, max_backoff_ms=60_000)
    d1 = p.decide(1, now=10.0)
    d2 = p.decide(2, now=10.0)
    d3 = p.decide(3, now=10.0)
    assert (d1.retry, d1.not_before) == (True, 11.0)
    assert (d2.retry, d2.not_before) == (True, 12.0)
    assert d3.retry is False
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_deaths_count_as_attempts_and_guard_the_last_one():
    p = RetryPolicy(max_attempts=3)
    assert not p.is_last(2) and p.is_last(3)
    assert not p.guarded(3, deaths=0)  # the last attempt after errors: batch isolation
    assert p.guarded(3, deaths=1) and not p.guarded(2, deaths=1)
    # Deaths are retried at once (the worker's restart is the pause) ...
    assert p.after_death(1, deaths=1, now=5.0) == RetryDecision(True, 5.0)
    # ... until a shard has killed more workers than it has attempts, naming no record.
    assert p.after_death(4, deaths=3, now=5.0).retry
    assert not p.after_death(4, deaths=4, now=5.0).retry


def test_a_record_is_quarantined_after_killing_its_worker_three_times_alone():
    p = RetryPolicy()
    assert not p.record_killed(2) and p.record_killed(3)
    assert RetryPolicy(kills_to_quarantine=1).record_killed(1)
    with pytest.raises(ValueError):
        RetryPolicy(kills_to_quarantine=0)
