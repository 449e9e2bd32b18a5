"""Intra-node elasticity: move threads between a worker's pipeline stages (pure policy).

A stage whose input queue stays full while all its threads are busy is the
bottleneck: it gets a thread, from the thread budget or from a stage that idles
with an empty input queue. A stage that idles with an empty input queue gives a
thread back. Changes are one thread at a time, at most every ``cooldown_s``, so the
measurements that follow reflect the last change. Time comes from ``ctx.now``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from batchwise.scaling.guardrails import cooldown_over

DEFAULT_COOLDOWN_S = 2.0
"""Minimum time (s) between two thread moves."""
DEFAULT_FULL = 0.75
"""Input-queue fill (fraction of its bound) at or above which a stage is backed up."""
DEFAULT_EMPTY = 0.1
"""Input-queue fill at or below which a stage is starved."""
DEFAULT_BUSY = 0.9
"""Busy fraction (of its threads' time) at or above which a stage is saturated."""
DEFAULT_IDLE = 0.5
"""Busy fraction below which a starved stage may give a thread away."""


@dataclass(frozen=True)
class StageStats:
    """One stage over the last measurement interval."""

    name: str
    threads: int
    max_threads: int
    queue_fill: float  # input queue length / bound, 0..1
    busy: float  # fraction of its threads' time spent working, 0..1


@dataclass(frozen=True)
class StageContext:
    now: float  # s, injected clock
    stages: tuple[StageStats, ...]
    thread_budget: int  # most threads the worker may run over all stages


@dataclass(frozen=True)
class StageScalerState:
    last_change: float = float("-inf")


@dataclass(frozen=True)
class StageScaler:
    """Decide per-stage thread counts from queue occupancy and busy time."""

    cooldown_s: float = DEFAULT_COOLDOWN_S
    full: float = DEFAULT_FULL
    empty: float = DEFAULT_EMPTY
    busy: float = DEFAULT_BUSY
    idle: float = DEFAULT_IDLE

    def decide(
        self, ctx: StageContext, state: StageScalerState
    ) -> tuple[dict[str, int], StageScalerState]:
        """New thread count per stage name (unchanged ones included) and the new state."""
        threads = {s.name: s.threads for s in ctx.stages}
        if not cooldown_over(ctx.now, state.last_change, self.cooldown_s):
            return threads, state
        changed = self._move(ctx, threads)
        return threads, replace(state, last_change=ctx.now) if changed else state

    def _starved(self, s: StageStats) -> bool:
        return s.threads > 1 and s.queue_fill <= self.empty and s.busy < self.idle

    def _move(self, ctx: StageContext, threads: dict[str, int]) -> bool:
        backed_up = [
            s for s in ctx.stages
            if s.queue_fill >= self.full and s.busy >= self.busy and s.threads < s.max_threads
        ]  # fmt: skip
        donors = sorted((s for s in ctx.stages if self._starved(s)), key=lambda s: s.busy)
        if backed_up:
            # The most backed-up stage first; ties: the one with fewer threads.
            target = max(backed_up, key=lambda s: (s.queue_fill, -s.threads))
            if sum(threads.values()) < ctx.thread_budget:
                threads[target.name] += 1
                return True
            donor = next((d for d in donors if d.name != target.name), None)
            if donor is None:
                return False
            threads[donor.name] -= 1
            threads[target.name] += 1
            return True
        if donors:
            threads[donors[0].name] -= 1
            return True
        return False
