"""The ``Timer`` seam: what a batching mechanism needs from time, and nothing more.

Why a protocol: the same :class:`~batchwise.serving.batcher.GroupBatcher` runs in the
discrete-event simulator (virtual time, :class:`batchwise.sim.core.SimTimer`) and in
the live gateway (the asyncio loop's monotonic clock, :class:`AsyncioTimer`). Both
give ``now()`` and ``call_at(t, callback)`` returning a handle with ``cancel()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    """A scheduled callback. ``cancel()`` is idempotent and a no-op once it ran."""

    def cancel(self) -> None: ...


class Timer(Protocol):
    """Monotonic seconds and one-shot callbacks at absolute times on that scale."""

    def now(self) -> float: ...

    def call_at(self, t: float, callback: Callable[[], object]) -> TimerHandle: ...


class AsyncioTimer:
    """The running asyncio loop as a :class:`Timer`.

    ``now()`` is ``time.monotonic()``, the scale both asyncio's and uvloop's
    ``loop.time()`` use; uvloop's own reads it in whole milliseconds, cached per loop
    iteration, which is too coarse for the service times measured with it (a 4 ms batch
    read as 3). Callbacks still go through the loop, at worst a millisecond late.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()

    def now(self) -> float:
        return time.monotonic()

    def call_at(self, t: float, callback: Callable[[], object]) -> TimerHandle:
        return self._loop.call_at(t, callback)
