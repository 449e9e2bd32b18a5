"""The event engine: ordering, cancellation, time checks and error propagation."""

from __future__ import annotations

import math

import pytest

from batchwise.sim.core import NORMAL, URGENT, EmptySchedule, Environment


@pytest.fixture
def env() -> Environment:
    return Environment()


@pytest.fixture
def log() -> list[tuple[float, str]]:
    return []


def test_orders_by_time_then_priority_then_insertion(env, log):
    def rec(tag):
        return lambda: log.append((env.now, tag))

    env.schedule(2.0, rec("t2"))
    env.schedule(1.0, rec("t1-normal-a"))
    env.schedule(1.0, rec("t1-urgent"), URGENT)
    env.schedule(1.0, rec("t1-normal-b"), NORMAL)
    env.schedule(0.5, rec("t0.5"))
    env.run()
    assert log == [
        (0.5, "t0.5"),
        (1.0, "t1-urgent"),
        (1.0, "t1-normal-a"),
        (1.0, "t1-normal-b"),
        (2.0, "t2"),
    ]
    assert env.now == 2.0


def test_callbacks_can_schedule_at_now_and_later(env, log):
    def first():
        log.append((env.now, "first"))
        env.schedule(env.now, lambda: log.append((env.now, "same-time")))
        env.schedule_in(1.5, lambda: log.append((env.now, "later")))

    env.schedule(1.0, first)
    env.run()
    assert log == [(1.0, "first"), (1.0, "same-time"), (2.5, "later")]


def test_cancelled_callbacks_never_run(env, log):
    h = env.schedule(1.0, lambda: log.append((env.now, "cancelled")))
    env.schedule(2.0, lambda: log.append((env.now, "kept")))
    h.cancel()
    h.cancel()  # idempotent
    assert env.peek() == 2.0
    env.run()
    assert log == [(2.0, "kept")]


def test_cancel_after_run_is_a_no_op(env, log):
    h = env.schedule(1.0, lambda: log.append((env.now, "ran")))
    env.run()
    h.cancel()
    assert log == [(1.0, "ran")]


def test_scheduling_in_the_past_raises(env):
    env.schedule(5.0, lambda: None)
    env.run()
    with pytest.raises(ValueError, match="cannot schedule"):
        env.schedule(4.0, lambda: None)
    with pytest.raises(ValueError):
        env.schedule(math.nan, lambda: None)
    with pytest.raises(ValueError):
        env.schedule_in(-0.1, lambda: None)


def test_callback_exception_propagates_and_leaves_engine_usable(env, log):
    def boom():
        raise RuntimeError("boom")

    env.schedule(1.0, boom)
    env.schedule(2.0, lambda: log.append((env.now, "after")))
    with pytest.raises(RuntimeError, match="boom"):
        env.run()
    assert env.now == 1.0
    env.run()  # the failed callback was consumed, the rest still runs
    assert log == [(2.0, "after")]


def test_peek_and_step_on_empty(env):
    assert env.peek() == math.inf
    with pytest.raises(EmptySchedule):
        env.step()


def test_run_until_stops_before_events_at_until(env, log):
    for t in (1.0, 2.0, 3.0):
        env.schedule(t, lambda: log.append((env.now, "x")))
    env.run(until=2.0)
    assert [t for t, _ in log] == [1.0]
    assert env.now == 2.0
    env.run()
    assert [t for t, _ in log] == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        env.run(until=1.0)


def test_clock_follows_virtual_time(env):
    seen = []
    env.schedule(3.25, lambda: seen.append(env.clock.now()))
    env.run()
    assert seen == [3.25]
    assert env.clock.now() == env.now
