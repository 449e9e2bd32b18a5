"""A tiny discrete-event engine: a virtual clock and a heap of timed callbacks.

Modelled on SimPy's ``core.py`` but smaller: there are no processes or events as
objects, only callbacks scheduled at absolute times. Mechanisms (the serving
simulation, the re-planner) build on this; policies never see it.

Ordering is deterministic: the heap is keyed ``(t, priority, seq)`` where ``seq``
is a counter, so two callbacks at the same time and priority run in the order
they were scheduled. Cancelling is lazy: a cancelled entry stays in the heap and
is skipped when it reaches the top.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from itertools import count

from batchwise.clock import SimClock

URGENT = 0
"""Priority of callbacks that must run before others at the same time (e.g. re-planning)."""

NORMAL = 1
"""Default priority."""

Callback = Callable[[], object]


class EmptySchedule(Exception):  # SimPy's name (no -Error suffix), kept for familiarity
    """``step()`` was called with nothing left to run."""


class Handle:
    """A scheduled callback; ``cancel()`` stops it from running."""

    __slots__ = ("callback", "cancelled", "priority", "time")

    def __init__(self, time: float, priority: int, callback: Callback) -> None:
        self.time = time
        self.priority = priority
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Idempotent; cancelling a callback that already ran has no effect."""
        self.cancelled = True

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Handle t={self.time} priority={self.priority}{state}>"


class SimTimer:
    """The environment as a :class:`batchwise.serving.timer.Timer` (virtual seconds)."""

    __slots__ = ("_env",)

    def __init__(self, env: Environment) -> None:
        self._env = env

    def now(self) -> float:
        return self._env.now

    def call_at(self, t: float, callback: Callback) -> Handle:
        return self._env.schedule(t, callback)


class Environment:
    """Virtual time plus the event heap. ``now`` only moves forward, in ``step()``."""

    def __init__(self, initial_time: float = 0.0) -> None:
        self.clock = SimClock(initial_time)  # injected into mechanisms that take a Clock
        self._now = float(initial_time)
        self._heap: list[tuple[float, int, int, Handle]] = []
        self._seq = count()

    @property
    def now(self) -> float:
        return self._now

    def schedule(self, t: float, callback: Callback, priority: int = NORMAL) -> Handle:
        """Run ``callback()`` at absolute time ``t`` (>= now). Returns a cancellable handle."""
        if not t >= self._now:  # also rejects NaN
            raise ValueError(f"cannot schedule at t={t}: now is {self._now}")
        handle = Handle(t, priority, callback)
        heapq.heappush(self._heap, (t, priority, next(self._seq), handle))
        return handle

    def schedule_in(self, delay: float, callback: Callback, priority: int = NORMAL) -> Handle:
        """Run ``callback()`` after ``delay`` seconds (>= 0)."""
        return self.schedule(self._now + delay, callback, priority)

    def _drop_cancelled(self) -> None:
        heap = self._heap
        while heap and heap[0][3].cancelled:
            heapq.heappop(heap)

    def peek(self) -> float:
        """Time of the next live callback, or ``inf`` when none is left."""
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else math.inf

    def step(self) -> None:
        """Advance to the next live callback and run it.

        The callback is removed before it runs, so an exception it raises
        propagates to the caller (never swallowed) and leaves the heap consistent.
        """
        self._drop_cancelled()
        if not self._heap:
            raise EmptySchedule("no scheduled callbacks left")
        t, _, _, handle = heapq.heappop(self._heap)
        self.clock.advance_to(t)
        self._now = t
        handle.cancelled = True  # ran: a later cancel() is a no-op
        handle.callback()

    def run(self, until: float | None = None) -> None:
        """Run callbacks until none are left, or those before ``until``.

        As in SimPy, callbacks at exactly ``until`` are not run; afterwards
        ``now == until`` so a later ``run`` continues from there.
        """
        if until is not None and until < self._now:
            raise ValueError(f"until={until} is before now={self._now}")
        stop = math.inf if until is None else until
        while self.peek() < stop:
            self.step()
        if until is not None:
            self.clock.advance_to(until)
            self._now = until
