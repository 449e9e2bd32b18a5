"""``GroupBatcher``: the one buffer loop of the codebase, for simulator and gateway alike.

The mechanism around :class:`~batchwise.serving.batching.MultiSloBatchPolicy`: it owns
one group's FIFO buffer, asks the policy after every arrival and every wake-up, hands
each dispatched batch (a FIFO prefix) to ``dispatch`` and keeps at most one wake-up
scheduled on the injected :class:`~batchwise.serving.timer.Timer`. What a batch *does*
is the sink's business: the simulator draws a service time and bills it; the gateway
sends it to an instance. So the simulator predicts the batching the gateway performs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from batchwise.serving.batching import BatchContext, MultiSloBatchPolicy, Pending
from batchwise.serving.timer import Timer, TimerHandle

DispatchSink = Callable[[Sequence[Pending]], None]
"""Receives each batch: pending requests in arrival order, at ``timer.now()``."""


class GroupBatcher:
    """A group's buffer driven by its batching policy on an injected timer."""

    def __init__(self, policy: MultiSloBatchPolicy, timer: Timer, dispatch: DispatchSink) -> None:
        self.policy = policy
        self._timer = timer
        self._dispatch = dispatch
        self._pending: list[Pending] = []  # FIFO buffer of arrived, undispatched requests
        self._wake: TimerHandle | None = None  # the one live wake-up, if any
        self._wake_t: float | None = None  # when it fires

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending(self) -> tuple[Pending, ...]:
        """Buffered requests in arrival order (a snapshot)."""
        return tuple(self._pending)

    def submit(self, request_id: int, app: str) -> None:
        """A request of ``app`` arrives now; ids must be unique among pending requests."""
        self._pending.append(Pending(request_id, app, self._timer.now()))
        self._decide()

    def set_policy(self, policy: MultiSloBatchPolicy) -> None:
        """Swap the policy (e.g. re-timed) and decide again under it at once."""
        self.policy = policy
        self._decide()

    def flush(self) -> None:
        """Dispatch everything pending now, in batches of at most ``batch_size`` (shutdown)."""
        size = self.policy.batch_size
        while self._pending:
            self._take(tuple(p.request_id for p in self._pending[:size]))
        self._set_wake(None)

    def _on_wake(self) -> None:
        self._wake = None
        self._wake_t = None
        self._decide()

    def _decide(self) -> None:
        # Invariant on return: the buffer holds what the policy chose to keep, and a
        # wake-up is scheduled at the policy's wake_at (none if it returned None).
        now = self._timer.now()
        decision = self.policy.decide(BatchContext(now, tuple(self._pending)))
        while decision.dispatch:
            self._take(decision.dispatch)
            decision = self.policy.decide(BatchContext(now, tuple(self._pending)))
        self._set_wake(decision.wake_at)

    def _take(self, ids: tuple[int, ...]) -> None:
        n = len(ids)
        batch = self._pending[:n]
        if n > self.policy.batch_size or tuple(p.request_id for p in batch) != ids:
            raise RuntimeError(f"policy must dispatch a FIFO prefix of <= batch_size, got {ids}")
        del self._pending[:n]
        self._dispatch(batch)

    def _set_wake(self, t: float | None) -> None:
        """Keep at most one wake-up; a superseded one is cancelled, so stale ones never fire."""
        if self._wake is not None:
            if t is not None and self._wake_t == t:
                return
            self._wake.cancel()
            self._wake = None
            self._wake_t = None
        if t is not None:
            # A deadline may round to a hair before now; wake at once rather than in the past.
            self._wake_t = t
            self._wake = self._timer.call_at(max(t, self._timer.now()), self._on_wake)
