"""GroupBatcher under a fake timer (tick by tick) and under the real asyncio loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from batchwise.serving.batcher import GroupBatcher
from batchwise.serving.batching import MultiSloBatchPolicy
from batchwise.serving.timer import AsyncioTimer


class FakeHandle:
    def __init__(self, t: float, callback: Callable[[], object]) -> None:
        self.t = t
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeTimer:
    """A manual clock: ``advance(t)`` runs due callbacks in time order."""

    def __init__(self) -> None:
        self.t = 0.0
        self.scheduled: list[FakeHandle] = []

    def now(self) -> float:
        return self.t

    def call_at(self, t: float, callback: Callable[[], object]) -> FakeHandle:
        h = FakeHandle(t, callback)
        self.scheduled.append(h)
        return h

    def live(self) -> list[float]:
        return [h.t for h in self.scheduled if not h.cancelled]

    def advance(self, t: float) -> None:
        while True:
            due = sorted(
                (h for h in self.scheduled if not h.cancelled and h.t <= t), key=lambda h: h.t
            )
            if not due:
                break
            h = due[0]
            h.cancelled = True
            self.t = h.t
            h.callback()
        self.t = t


POLICY = MultiSloBatchPolicy(batch_size=3, timeouts_s={"tight": 0.2, "loose": 0.5})


def make(timer) -> tuple[GroupBatcher, list[tuple[float, tuple[int, ...]]]]:
    log: list[tuple[float, tuple[int, ...]]] = []
    b = GroupBatcher(POLICY, timer, lambda batch: log.append(
        (timer.now(), tuple(p.request_id for p in batch))))  # fmt: skip
    return b, log


def test_keeps_one_wakeup_at_the_earliest_deadline():
    timer = FakeTimer()
    b, log = make(timer)
    b.submit(1, "loose")  # deadline 0.5
    assert timer.live() == [0.5]
    timer.advance(0.1)
    b.submit(2, "tight")  # deadline 0.3 supersedes 0.5
    assert timer.live() == [pytest.approx(0.3)]
    timer.advance(0.29)
    assert log == [] and len(b) == 2
    timer.advance(0.31)
    assert log == [(pytest.approx(0.3), (1, 2))]  # arrival order (the default)
    assert len(b) == 0 and timer.live() == []


def test_full_batch_goes_at_once_and_the_rest_waits():
    timer = FakeTimer()
    b, log = make(timer)
    for i in range(4):
        b.submit(i, "loose")
    assert log == [(0.0, (0, 1, 2))]
    assert [p.request_id for p in b.pending] == [3]
    assert timer.live() == [0.5]


def test_flush_dispatches_everything_in_policy_sized_batches():
    timer = FakeTimer()
    b, log = make(timer)
    for i in range(2):
        b.submit(i, "loose")
    b.flush()
    assert log == [(0.0, (0, 1))] and len(b) == 0 and timer.live() == []


def test_a_policy_that_breaks_fifo_is_an_error():
    class Bad(MultiSloBatchPolicy):
        def decide(self, ctx):  # type: ignore[override]
            from batchwise.serving.batching import BatchDecision

            return BatchDecision((99,), None)

    b = GroupBatcher(Bad(batch_size=2), FakeTimer(), lambda batch: None)
    with pytest.raises(RuntimeError, match="FIFO prefix"):
        b.submit(1, "a")


def test_runs_on_the_asyncio_loop():
    async def scenario() -> list[tuple[float, tuple[int, ...]]]:
        timer = AsyncioTimer()
        policy = MultiSloBatchPolicy(batch_size=8, timeouts_s={"a": 0.05})
        log: list[tuple[float, tuple[int, ...]]] = []
        start = timer.now()
        b = GroupBatcher(policy, timer, lambda batch: log.append(
            (timer.now() - start, tuple(p.request_id for p in batch))))  # fmt: skip
        b.submit(1, "a")
        b.submit(2, "a")
        await asyncio.sleep(0.15)
        return log

    log = asyncio.run(scenario())
    assert [ids for _, ids in log] == [(1, 2)]
    assert 0.05 <= log[0][0] < 0.14  # fired by the loop at the deadline, not later


def test_a_closed_gate_holds_the_buffer_and_a_kick_sends_the_most_urgent():
    """Late binding: no instance free, nothing leaves; when one frees, in deadline order
    the tight requests that arrived after the loose ones go first."""
    timer = FakeTimer()
    free = {"n": 0}
    log: list[tuple[float, tuple[int, ...]]] = []
    b = GroupBatcher(POLICY, timer, lambda batch: (log.append(
        (timer.now(), tuple(p.request_id for p in batch))), free.update(n=free["n"] - 1)),
        gate=lambda: free["n"] > 0, order="deadline")  # fmt: skip
    for i in range(4):
        b.submit(i, "loose")  # deadlines 0.5
    timer.advance(0.1)
    b.submit(4, "tight")  # deadline 0.3
    b.submit(5, "tight")
    assert log == [] and len(b) == 6 and timer.live() == []  # held: no wake-up either
    assert b.ahead_of(b.urgency("tight", 0.1)) == 2  # both tight ones; no loose one
    assert b.ahead_of(b.urgency("loose", 0.1)) == 6
    assert b.earliest_deadline() == pytest.approx(0.3)
    timer.advance(1.0)
    free["n"] = 1
    b.kick()
    assert log == [(1.0, (4, 5, 0))]  # one instance: one batch, the most urgent three
    assert [p.request_id for p in b.pending] == [1, 2, 3]
    free["n"] = 2
    b.kick()
    assert log[1:] == [(1.0, (1, 2, 3))] and len(b) == 0


def test_an_open_gate_batches_as_without_one():
    timer = FakeTimer()
    log: list[tuple[float, tuple[int, ...]]] = []
    b = GroupBatcher(POLICY, timer, lambda batch: log.append(
        (timer.now(), tuple(p.request_id for p in batch))), gate=lambda: True)  # fmt: skip
    b.submit(1, "loose")
    assert timer.live() == [0.5]
    timer.advance(0.6)
    assert log == [(0.5, (1,))]


def test_in_arrival_order_a_kick_sends_the_oldest_and_nobody_overtakes():
    timer = FakeTimer()
    free = {"n": 0}
    log: list[tuple[int, ...]] = []
    b = GroupBatcher(POLICY, timer, lambda batch: (log.append(
        tuple(p.request_id for p in batch)), free.update(n=free["n"] - 1)),
        gate=lambda: free["n"] > 0)  # fmt: skip
    for i, app in enumerate(["loose", "loose", "tight", "tight"]):
        b.submit(i, app)
    assert b.ahead_of(b.urgency("tight", 0.0)) == 4  # everything buffered is ahead
    free["n"] = 1
    b.kick()
    assert log == [(0, 1, 2)]
    with pytest.raises(ValueError, match="order"):
        GroupBatcher(POLICY, timer, lambda batch: None, order="edf")
