"""How far behind the gateway's event loop runs: the wait a request meets before admission.

Why: admission predicts a request's finish from the moment its handler runs. When the
gateway itself is the bottleneck (HTTP parsing at several hundred requests per second
on a small machine, or CPU taken by the instances), a request's bytes wait in the
loop's ready queue — twice: once to be read, once for its handler task — before that
moment, and its timeouts fire late by as much. Seen here: offered more than the loop
can parse, admitted requests met their SLO 8 % of the time, refusals took seconds.
A tick every ``tick_s`` measures how late the loop runs a callback; their moving average
is what :class:`~batchwise.serving.server.Server` charges every request (``LAG_HOPS``
times) and what makes the gateway refuse work before parsing it.

:class:`LagTracker` is the pure part (samples in, a value out, the clock given);
:class:`LoopLag` is the asyncio task that feeds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

TICK_S = 0.01
"""How often the loop's lateness is sampled (s)."""
TAU_S = 0.5
"""Time constant of the lateness average (s)."""
LAG_HOPS = 2
"""Ready-queue waits a request meets before its handler runs (read, then its task)."""
SHED_FRACTION = 0.25
"""Refuse before parsing when ``LAG_HOPS × lag`` exceeds this fraction of the app's SLO:
the request has lost that much of its budget before admission could look at it."""


class LagTracker:
    """Time-weighted moving average of the loop's lateness. Invariant: ``value() >= 0``.

    An average, not a peak: one 30 ms hiccup (a GC pause, an instance taking the core)
    must not refuse requests at normal load; a loop that stays late, saturated, moves it
    within about ``tau_s``.
    """

    def __init__(self, tau_s: float = TAU_S) -> None:
        self.tau_s = tau_s
        self._mean = 0.0
        self._at: float | None = None

    def observe(self, now: float, late_s: float) -> None:
        """A sample taken at ``now``: the loop ran a callback ``late_s`` late."""
        dt = self.tau_s if self._at is None else max(0.0, now - self._at)
        w = 1.0 - math.exp(-dt / self.tau_s)  # a sample weighs what its interval covers
        self._mean += w * (max(0.0, late_s) - self._mean)
        self._at = now

    def value(self) -> float:
        return self._mean


class LoopLag:
    """The sampling task on the running loop (start once the loop runs; stop on close)."""

    def __init__(self, tick_s: float = TICK_S, tau_s: float = TAU_S) -> None:
        self.tick_s = tick_s
        self.tracker = LagTracker(tau_s)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            self.tracker.observe(now, now - t - self.tick_s)

    def lag_s(self) -> float:
        """The loop's current lateness (s); 0 before start."""
        return 0.0 if self._task is None else self.tracker.value()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
