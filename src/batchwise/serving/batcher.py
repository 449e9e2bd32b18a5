"""``GroupBatcher``: the one buffer loop of the codebase, for simulator and gateway alike.

The mechanism around :class:`~batchwise.serving.batching.MultiSloBatchPolicy`: it owns
one group's buffer, asks the policy after every arrival and every wake-up, hands each
dispatched batch to ``dispatch`` and keeps at most one wake-up scheduled on the
injected :class:`~batchwise.serving.timer.Timer`. What a batch *does* is the sink's
business: the simulator draws a service time and bills it; the gateway sends it to an
instance. So the simulator predicts the batching the gateway performs.

**Late binding.** With a ``gate`` (can an instance take a batch now?), a batch is
formed only when one can: while every instance is busy the requests stay here, and
when one frees (``kick``) it gets the next ``n`` — the policy says *when* and *how many*
(full, or an app's timeout reached), the order says *which*: arrival (``ARRIVAL``, the
default) or earliest deadline first (``DEADLINE``). Deadline order lets a tight-SLO
request overtake loose ones buffered before it (at 10x the plan's load chat was 77 %
admitted in arrival order, 97-98 % in deadline order), but the loose ones it overtakes
must be refused for the overtaking they can expect, and on this machine that cost more
than it gained: 90-92 % admitted in all (93 % in arrival order) and, at 3x overload,
admitted loose requests late (97-99 % on time; bench/RESULTS.md §6f). A request's
urgency (:meth:`GroupBatcher.urgency`) in deadline order is ``arrival + its app's
timeout``: timeouts are SLO minus the same group-wide worst batch and overhead, so that
order is the SLO deadlines' order. Within one app it is arrival order, so each app's
buffer is a FIFO and the next requests are at the heads: picking a batch merges a few
heads, and counting who is ahead of a new request (admission's replay) is a bisection
per app.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Callable, Sequence

from batchwise.serving.batching import BatchContext, MultiSloBatchPolicy, Pending
from batchwise.serving.timer import Timer, TimerHandle

DispatchSink = Callable[[Sequence[Pending]], None]
"""Receives each batch: pending requests in the order picked, at ``timer.now()``."""
Gate = Callable[[], bool]
"""Whether an instance can take a batch now (no gate: always)."""
ARRIVAL, DEADLINE = "arrival", "deadline"
ORDERS = (ARRIVAL, DEADLINE)
"""Orders batches are picked in."""


class GroupBatcher:
    """A group's buffer driven by its batching policy on an injected timer."""

    def __init__(self, policy: MultiSloBatchPolicy, timer: Timer, dispatch: DispatchSink,
                 gate: Gate | None = None, order: str = ARRIVAL) -> None:  # fmt: skip
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        self.policy = policy
        self.by_deadline = order == DEADLINE
        self._timer = timer
        self._dispatch = dispatch
        self.gate = gate
        self._pending: dict[int, Pending] = {}  # arrived, undispatched; arrival order
        # the same per app, each with its arrival number (ties in time go in arrival order)
        self._by_app: dict[str, deque[tuple[int, Pending]]] = {}
        self._seq = itertools.count()
        self._wake: TimerHandle | None = None  # the one live wake-up, if any
        self._wake_t: float | None = None  # when it fires

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending(self) -> tuple[Pending, ...]:
        """Buffered requests in arrival order (a snapshot)."""
        return tuple(self._pending.values())

    def offset(self, app: str) -> float:
        """Urgency less arrival: the app's timeout in deadline order (its SLO less the
        group's worst batch and overhead; even at batch size 1, where the policy sends at
        once and the timeout says only how urgent the request is), 0 in arrival order."""
        return self.policy.timeouts_s.get(app, 0.0) if self.by_deadline else 0.0

    def urgency(self, app: str, arrival_s: float) -> float:
        """The order batches are picked in (smallest first; ties: the earlier arrival)."""
        return arrival_s + self.offset(app)

    def earliest_deadline(self) -> float | None:
        """When the policy must dispatch what is buffered (None: nothing is)."""
        heads = [self.policy.deadline(q[0][1]) for q in self._by_app.values() if q]
        return min(heads, default=None)

    def ahead_of(self, urgency: float) -> int:
        """Buffered requests at least as urgent as ``urgency`` (picked before such a one)."""
        n = 0
        for app, q in self._by_app.items():
            if q:  # urgency is monotone in arrival within an app
                n += bisect.bisect_right(q, urgency - self.offset(app), key=_arrival)
        return n

    def submit(self, request_id: int, app: str) -> None:
        """A request of ``app`` arrives now; ids must be unique among pending requests."""
        p = Pending(request_id, app, self._timer.now())
        self._pending[request_id] = p
        q = self._by_app.get(app)
        if q is None:
            q = self._by_app[app] = deque()
        q.append((next(self._seq), p))
        self._decide()

    def set_policy(self, policy: MultiSloBatchPolicy) -> None:
        """Swap the policy (e.g. re-timed) and decide again under it at once."""
        self.policy = policy
        self._decide()

    def kick(self) -> None:
        """An instance can take a batch: decide now (the gate was closed until now)."""
        self._decide()

    def flush(self) -> None:
        """Dispatch everything pending now, in batches of at most ``batch_size`` (shutdown),
        gate or no gate."""
        size = self.policy.batch_size
        while self._pending:
            self._take(min(size, len(self._pending)))
        self._set_wake(None)

    def _on_wake(self) -> None:
        self._wake = None
        self._wake_t = None
        self._decide()

    def _open(self) -> bool:
        return self.gate is None or self.gate()

    def _decide(self) -> None:
        # Invariant on return: the buffer holds what the policy chose to keep (or what no
        # instance could take: ``kick`` decides again), and a wake-up is scheduled at the
        # policy's wake_at (none if it returned None or the gate is closed).
        if not self._pending or not self._open():
            # Closed: no decision (it reads the whole buffer, which grows while instances
            # are busy); the freed instance's kick decides.
            self._set_wake(None)
            return
        now = self._timer.now()
        decision = self.policy.decide(BatchContext(now, self.pending))
        while decision.dispatch:
            n = len(decision.dispatch)
            head = tuple(p.request_id for p in itertools.islice(self._pending.values(), n))
            if n > self.policy.batch_size or head != decision.dispatch:
                raise RuntimeError(f"policy must dispatch a FIFO prefix of <= batch_size, "
                                   f"got {decision.dispatch}")  # fmt: skip
            self._take(n)
            if not self._pending or not self._open():
                self._set_wake(None)
                return
            decision = self.policy.decide(BatchContext(now, self.pending))
        self._set_wake(decision.wake_at)

    def _take(self, n: int) -> None:
        """Dispatch the ``n`` most urgent pending requests (ties: the earlier arrival)."""
        queues = [q for q in self._by_app.values() if q]
        batch: list[Pending] = []
        offset = self.offset
        for _ in range(n):
            q = min(queues, key=lambda q: (q[0][1].arrival_s + offset(q[0][1].app), q[0][0]))
            _, p = q.popleft()
            del self._pending[p.request_id]
            batch.append(p)
            if not q:
                queues.remove(q)
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


def _arrival(entry: tuple[int, Pending]) -> float:
    return entry[1].arrival_s
