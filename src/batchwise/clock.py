"""Clocks: the only place (with backends) allowed to read time or sleep.

Policies never read a clock; mechanisms take a :class:`Clock` so the simulator
can drive them with virtual time and the live runtime with the wall clock.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time source, in seconds."""

    def now(self) -> float: ...


class WallClock:
    """Real monotonic time (``time.monotonic``), for live serving."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class SimClock:
    """Virtual time that only the simulator advances."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        if t < self._now:
            raise ValueError(f"time cannot go backwards: {t} < {self._now}")
        self._now = t


class Stopwatch:
    """Measures elapsed wall time for reports (planning time, progress)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def elapsed_s(self) -> float:
        return time.perf_counter() - self._start
