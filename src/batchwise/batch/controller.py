"""Inter-node elasticity: how many workers a job should run now (a pure policy).

The target is the backlog (no more workers than unsettled shards), capped by the
CPUs the cluster can give the job (its own workers' CPUs plus free ones) and kept
within the job's ``[min, max]``. Growth and shrinkage wait ``cooldown_s`` after the
previous change so that a worker that just started (loading its model) is not
mistaken for missing capacity. Time comes from ``ctx.now``.

This is also what lets batch jobs soak up capacity that live services leave idle:
when services take CPUs back, ``free_cpus`` falls and the job shrinks to fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from batchwise.scaling.guardrails import Guardrails, GuardState, apply_bounds, guard

DEFAULT_SCALE_COOLDOWN_S = 5.0
"""Minimum time (s) between two changes of the worker count."""
DEFAULT_MIN_CPU_FRACTION = 0.5
"""A worker is worth running when at least this share of its CPUs is free (noise margin)."""


@dataclass(frozen=True)
class ScaleContext:
    now: float  # s, injected clock
    backlog: int  # shards todo or leased
    workers: int  # workers running (draining ones excluded)
    min_workers: int
    max_workers: int
    free_cpus: float  # CPUs the job could still take; < 0: others need some of the job's back
    cpus_per_worker: float


ScaleState = GuardState  # the worker count in force and when it last changed


@dataclass(frozen=True)
class WorkerScaler:
    cooldown_s: float = DEFAULT_SCALE_COOLDOWN_S
    min_cpu_fraction: float = DEFAULT_MIN_CPU_FRACTION

    def wanted(self, ctx: ScaleContext) -> int:
        """The worker count the backlog and free CPUs call for (before guardrails)."""
        own = ctx.workers * ctx.cpus_per_worker
        slots = max(0.0, own + ctx.free_cpus) / ctx.cpus_per_worker
        capacity = math.floor(slots + 1 - self.min_cpu_fraction + 1e-9)
        return min(ctx.backlog, capacity)

    def target(self, ctx: ScaleContext) -> int:
        """The worker count wanted now within ``[min, max]``, ignoring the cooldown."""
        lo, hi = min(ctx.min_workers, ctx.max_workers), ctx.max_workers
        return apply_bounds(self.wanted(ctx), lo, hi)

    def decide(self, ctx: ScaleContext, state: ScaleState) -> tuple[int, ScaleState]:
        """Target worker count and the new state (the shared guardrails: bounds, cooldown).

        Workers that died are replaced up to the current target at once (the master
        spawns up to it); only a change of the target itself waits for the cooldown.
        """
        lo, hi = min(ctx.min_workers, ctx.max_workers), ctx.max_workers
        return guard(self.wanted(ctx), state, ctx.now, Guardrails(lo, hi, self.cooldown_s))
