"""MultiSloBatchPolicy, stepped on virtual time through the shipped GroupBatcher (no sleeps)."""

from __future__ import annotations

import pytest

from batchwise.serving.batcher import GroupBatcher
from batchwise.serving.batching import BatchContext, BatchDecision, MultiSloBatchPolicy, Pending
from batchwise.sim.core import Environment, SimTimer


def run_policy(
    policy: MultiSloBatchPolicy, arrivals: list[tuple[float, str]], until: float = 10.0
) -> list[tuple[float, tuple[int, ...]]]:
    """Drive the shipped mechanism (GroupBatcher on the simulation clock); log dispatches.

    Request ids are the arrival indices. Returns ``[(now, dispatched ids), ...]``.
    """
    env = Environment()
    log: list[tuple[float, tuple[int, ...]]] = []
    batcher = GroupBatcher(
        policy,
        SimTimer(env),
        lambda batch: log.append((env.now, tuple(p.request_id for p in batch))),
    )
    for rid, (at, app) in enumerate(arrivals):
        env.schedule(at, lambda rid=rid, app=app: batcher.submit(rid, app))
    env.run(until=until)
    return log


def pend(*items: tuple[int, str, float]) -> tuple[Pending, ...]:
    return tuple(Pending(i, app, t) for i, app, t in items)


POLICY = MultiSloBatchPolicy(batch_size=3, timeouts_s={"tight": 0.2, "loose": 0.5})


def test_empty_buffer_does_nothing():
    assert POLICY.decide(BatchContext(1.0, ())) == BatchDecision.make_empty()


def test_dispatch_when_full_takes_a_fifo_prefix():
    ctx = BatchContext(
        0.3, pend((7, "loose", 0.0), (8, "loose", 0.1), (9, "tight", 0.2), (10, "loose", 0.3))
    )
    d = POLICY.decide(ctx)
    assert d.dispatch == (7, 8, 9)
    # The leftover request's own deadline is the next wake-up.
    assert d.wake_at == pytest.approx(0.3 + 0.5)


def test_waits_until_the_earliest_app_deadline():
    # loose arrives first (deadline 0.5); tight arrives later but expires first (0.1 + 0.2).
    ctx = BatchContext(0.1, pend((1, "loose", 0.0), (2, "tight", 0.1)))
    d = POLICY.decide(ctx)
    assert d.dispatch == ()
    assert d.wake_at == pytest.approx(0.3)
    assert POLICY.decide(BatchContext(0.2999, ctx.pending)).dispatch == ()
    # At the deadline everything pending goes, in FIFO order.
    assert POLICY.decide(BatchContext(0.3, ctx.pending)) == BatchDecision((1, 2), None)


def test_batch_size_one_dispatches_immediately():
    policy = MultiSloBatchPolicy(batch_size=1, timeouts_s={"a": 5.0})
    d = policy.decide(BatchContext(2.0, pend((1, "a", 2.0))))
    assert d.dispatch == (1,)
    # With two waiting, the second is already due: wake at its arrival, not after 5 s.
    d = policy.decide(BatchContext(2.0, pend((1, "a", 1.9), (2, "a", 2.0))))
    assert d == BatchDecision((1,), 2.0)
    assert run_policy(policy, [(0.0, "a"), (0.25, "a"), (0.25, "a")]) == [
        (0.0, (0,)),
        (0.25, (1,)),
        (0.25, (2,)),
    ]


def test_app_without_a_timeout_dispatches_at_once():
    d = POLICY.decide(BatchContext(1.0, pend((1, "unknown", 1.0))))
    assert d.dispatch == (1,)


@pytest.mark.parametrize(
    ("batch_size", "timeouts"),
    [(0, {}), (-1, {"a": 0.1}), (2, {"a": -0.01}), (2, {"a": float("nan")})],
)
def test_invalid_config_raises(batch_size, timeouts):
    with pytest.raises(ValueError):
        MultiSloBatchPolicy(batch_size=batch_size, timeouts_s=timeouts)


def test_step_log_full_batches_and_deadlines():
    arrivals = [
        (0.0, "loose"),  # 0: deadline 0.5
        (0.1, "loose"),  # 1
        (0.15, "loose"),  # 2: batch full at 0.15
        (1.0, "loose"),  # 3: deadline 1.5
        (1.1, "tight"),  # 4: deadline 1.3 (earliest) -> dispatch 3, 4 at 1.3
        (2.0, "loose"),  # 5: alone -> dispatch at its own deadline 2.5
    ]
    log = run_policy(POLICY, arrivals)
    assert [(pytest.approx(t), ids) for t, ids in log] == [
        (0.15, (0, 1, 2)),
        (1.3, (3, 4)),
        (2.5, (5,)),
    ]


def test_step_log_overflow_wakes_for_the_leftover():
    # Four arrive together: the first three go at once, the fourth at its own deadline.
    arrivals = [(0.0, "loose"), (0.0, "tight"), (0.0, "loose"), (0.0, "tight")]
    log = run_policy(POLICY, arrivals)
    assert log == [(0.0, (0, 1, 2)), (pytest.approx(0.2), (3,))]
