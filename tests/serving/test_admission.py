"""Deadline-aware admission: the replay of batcher and pool, on hand-made group states."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from batchwise.serving.admission import ArrivalRate, GroupLoad, WaitStretch, decide, predict


def predict_finish(*args, **kw):
    p = predict(*args, **kw)
    return p.finish_s, p.queued


def avg(b: int) -> float:
    return 0.01 + 0.01 * b  # seconds per batch of b


def worst(b: int) -> float:
    return 1.5 * avg(b)


def load(**kw) -> GroupLoad:
    base = dict(now=100.0, batch_size=4, buffered=0, earliest_deadline=None, queued=(),
                free_at=(100.0,))  # fmt: skip
    base.update(kw)
    return GroupLoad(**base)


def test_an_idle_group_charges_the_timeout_and_a_full_batch():
    finish, queued = predict_finish(load(), 1, 0.2, avg, worst)
    assert not queued
    assert math.isclose(finish, 100.0 + 0.2 + worst(4))


def test_a_request_that_fills_the_batch_leaves_now():
    finish, queued = predict_finish(load(buffered=3, earliest_deadline=100.15), 1, 0.2, avg,
                                    worst)  # fmt: skip
    assert math.isclose(finish, 100.0 + worst(4)) and not queued


def test_joining_a_partial_batch_leaves_at_its_earliest_deadline():
    finish, _ = predict_finish(load(buffered=1, earliest_deadline=100.05), 1, 0.2, avg, worst)
    assert math.isclose(finish, 100.05 + worst(4))


def test_queued_batches_delay_the_start_and_the_stretch_scales_the_wait():
    state = load(queued=(4, 4), free_at=(100.3,))
    p = predict(state, 4, 0.2, avg, worst)
    assert p.queued and math.isclose(p.wait_s, 0.3 + 2 * avg(4))
    assert math.isclose(p.finish_s, 100.3 + 2 * avg(4) + worst(4))
    later = predict(state, 4, 0.2, avg, worst, queue_stretch=1.5)
    # the wait for the instance grows by half; the own batch's service time does not
    assert math.isclose(later.finish_s, 100.0 + 1.5 * p.wait_s + worst(4))
    assert math.isclose(later.wait_s, p.wait_s)  # reported unstretched (what is learned)


def test_the_stretch_never_delays_a_request_that_would_not_queue():
    finish, queued = predict_finish(load(), 1, 0.2, avg, worst, queue_stretch=5.0)
    assert not queued and math.isclose(finish, 100.0 + 0.2 + worst(4))
    # an instance that frees before the batch leaves stays ahead of it under a stretch
    # that keeps it ahead, and becomes the limit when stretched past the dispatch
    early = load(free_at=(100.1,))
    assert not predict(early, 1, 0.2, avg, worst, queue_stretch=1.5).queued
    assert predict(early, 1, 0.2, avg, worst, queue_stretch=3.0).queued


def test_requests_over_several_batches_finish_with_their_last_item():
    finish, _ = predict_finish(load(free_at=(100.0, 100.0)), 9, 0.2, avg, worst)
    # two full batches leave now on two instances; the ninth item waits its timeout
    assert math.isclose(finish, 100.0 + 0.2 + worst(4))


def test_decide_refuses_late_queued_requests_with_a_retry_after():
    state = load(queued=(4,) * 10, free_at=(100.5,))
    v = decide(state, 1, 0.2, deadline=100.4, avg=avg, worst=worst)
    assert not v.admit and v.retry_after_s >= 1 and v.finish_s > 100.4


def test_decide_always_admits_when_nothing_queues_even_past_the_deadline():
    v = decide(load(), 1, 0.2, deadline=100.1, avg=avg, worst=worst)
    assert v.admit and not v.queued


def test_no_instance_means_no_admission():
    v = decide(load(free_at=()), 1, 0.2, deadline=200.0, avg=avg, worst=worst)
    assert not v.admit and math.isinf(v.finish_s)


# -- the learned queue stretch ------------------------------------------------------


def test_the_stretch_is_cautious_until_it_has_evidence():
    s = WaitStretch()
    assert s.value(0.0) == s.cold
    for i in range(s.min_samples - 1):
        s.learn(float(i), 1.0, 1.0)
    assert s.value(31.0) == s.cold
    s.learn(31.0, 1.0, 1.0)  # the 32nd: waits ran as predicted
    assert s.value(31.0) == 1.0


def test_the_stretch_is_a_high_quantile_of_actual_over_predicted_waits_within_bounds():
    s = WaitStretch()
    for i in range(64):
        s.learn(0.0, 0.5, 0.5 * (1.2 if i % 10 == 0 else 1.0))  # one in ten ran 20 % long
    assert math.isclose(s.value(0.0), 1.2)
    faster = WaitStretch()
    for _ in range(64):
        faster.learn(0.0, 1.0, 0.5)
    assert faster.value(0.0) == 1.0  # never below the replay
    slower = WaitStretch()
    for _ in range(64):
        slower.learn(0.0, 0.1, 10.0)
    assert slower.value(0.0) == slower.most  # one bad spell cannot shut admission


def test_the_stretch_remembers_a_slow_spell_for_memory_s_however_many_samples_follow():
    s = WaitStretch()
    for i in range(64):  # a slow spell: waits twice the replay's
        s.learn(i / 64, 1.0, 2.0)
    for i in range(2000):  # then 3 s of on-time waits, far more samples than the spell's
        s.learn(1.0 + 3.0 * i / 2000, 1.0, 1.0)
    assert s.value(4.0) == pytest.approx(2.0, abs=0.01)  # 64 of 2064 over the 99.5th pct
    for i in range(64):  # past the memory: the spell is forgotten, not the on-time ones
        s.learn(s.memory_s + 1.5 + i / 64, 1.0, 1.0)
    assert s.value(s.memory_s + 2.5) == pytest.approx(1.0)


def test_after_a_quiet_spell_the_stretch_is_not_cold_again():
    s = WaitStretch()
    for _ in range(64):
        s.learn(0.0, 1.0, 1.0)
    s.learn(100.0, 1.0, 1.0)  # the first queued request in a while: the rest expired
    assert s.value(100.0) == 1.0  # learned once: it does not fall back to ``cold``


def test_the_stretch_decays_towards_one_without_new_evidence():
    s = WaitStretch()
    for _ in range(64):
        s.learn(10.0, 1.0, 2.0)
    assert math.isclose(s.value(10.0), 2.0)
    assert math.isclose(s.value(10.0 + s.half_life_s), 1.5)
    s.learn(20.0, 0.0, 1.0)  # no predicted wait: nothing to learn (and no fresh evidence)
    assert math.isclose(s.value(20.0), 1.0 + 0.5 ** (10.0 / s.half_life_s))


def test_an_urgent_request_is_replayed_ahead_of_less_urgent_buffered_ones():
    """Batches are picked earliest deadline first: of 12 buffered items only the 2 at
    least as urgent precede it, so it starts with the instance's first free slot."""
    busy = load(buffered=12, earliest_deadline=100.0, free_at=(100.5,))
    fifo = predict(busy, 1, 0.2, avg, worst)
    edf = predict(replace(busy, ahead=2), 1, 0.2, avg, worst)
    assert math.isclose(fifo.finish_s, 100.5 + 3 * avg(4) + worst(4))  # behind 3 batches
    assert math.isclose(edf.finish_s, 100.5 + worst(4))  # in the first batch
    assert math.isclose(edf.start_s, 100.5)


def test_expected_jumpers_push_a_loose_request_back():
    """Items of a tighter app arriving while it waits are picked before it: 200 items/s
    for 0.5 s is 100 items, 25 batches of 4 more before it."""
    busy = load(buffered=4, earliest_deadline=100.0, free_at=(100.5,))
    alone = predict(busy, 1, 0.2, avg, worst)
    pushed = predict(busy, 1, 0.2, avg, worst, jumpers=lambda t: 200.0 * max(0.0, t - 100.0))
    assert pushed.finish_s > alone.finish_s + 20 * avg(4)
    # to the fixed point: as many as arrive before its batch starts, at most all that can
    # (200 items/s until 101.0, when their deadlines pass its own)
    bounded = predict(busy, 1, 0.2, avg, worst,
                      jumpers=lambda t: 200.0 * max(0.0, min(t, 101.0) - 100.0))  # fmt: skip
    assert math.isclose(bounded.finish_s, 100.5 + 51 * avg(4) + worst(4))
    # an idle group: a few jumpers fit in the instance's free time; a flood fills it first
    few = predict(load(), 1, 0.2, avg, worst, jumpers=lambda t: 5.0 * (t - 100.0))
    assert not few.queued and math.isclose(few.finish_s, 100.0 + 0.2 + worst(4))
    flood = predict(load(), 1, 0.2, avg, worst, jumpers=lambda t: 200.0 * (t - 100.0))
    assert flood.queued and flood.finish_s > 100.0 + 0.2 + worst(4) + 5 * avg(4)


def test_arrival_rate_decays_and_counts_items():
    r = ArrivalRate(tau_s=2.0)
    for i in range(200):
        r.add("chat", i * 0.05)  # 20 per second for 10 s
    assert 17.0 < r.rate("chat", 10.0) < 21.0
    assert r.rate("chat", 20.0) < 0.2 * r.rate("chat", 10.0)
    assert r.rate("other", 10.0) == 0.0 and r.apps() == ["chat"]


def test_whole_rounds_of_batches_replay_as_one_by_one():
    """The replay's shortcut (instances taking turns) gives the same free times."""
    import heapq
    import random

    from batchwise.serving.admission import _run_full

    rng = random.Random(3)
    for _ in range(200):
        free = [rng.uniform(0, 0.5) for _ in range(rng.randint(1, 4))]
        n, each = rng.randint(0, 60), rng.uniform(0.01, 0.3)
        fast, slow = list(free), list(free)
        heapq.heapify(fast)
        heapq.heapify(slow)
        _run_full(fast, n, each)
        for _ in range(n):
            heapq.heapreplace(slow, slow[0] + each)
        assert sorted(fast) == pytest.approx(sorted(slow))
