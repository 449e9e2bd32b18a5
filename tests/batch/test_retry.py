"""Retry policy: bounded attempts, exponential capped backoff."""

from __future__ import annotations

import pytest

from batchwise.batch.retry import RetryPolicy, compute_backoff


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
