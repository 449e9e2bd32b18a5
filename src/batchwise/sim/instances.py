"""Finite instance pools for the serving simulation (a fixed machine, not serverless).

Why: the serverless model starts every batch at once on its own instance, which no
fixed machine does. With a pool, a group has ``warm`` instances; a batch runs on the
instance that frees up first (batches queue FIFO when all are busy), and while all
are busy the pool may start another one, up to ``max``, which serves only after
``cold_start_s``. This lets a simulation predict a live run on a fixed machine,
queueing delay included — and, as live, every request spends ``overhead_s`` outside
batching (HTTP, IPC) and groups batch with the gateway's timeouts
(:func:`batchwise.serving.deadlines.live_timeouts`).
"""

from __future__ import annotations

from dataclasses import dataclass

from batchwise.errors import ConfigError
from batchwise.serving.deadlines import DEFAULT_OVERHEAD_S


@dataclass(frozen=True)
class PoolSpec:
    """Instances per group. Invariant: ``1 <= warm <= max``; delays >= 0."""

    warm: int  # instances ready at t = 0
    max: int  # instances the pool may grow to while all are busy
    cold_start_s: float = 0.0  # delay before a new instance serves (s)
    overhead_s: float = DEFAULT_OVERHEAD_S  # per request, outside batching, as live (s)

    def __post_init__(self) -> None:
        if not 1 <= self.warm <= self.max:
            raise ConfigError(f"instances: need 1 <= warm ({self.warm}) <= max ({self.max})")
        if not 0 <= self.cold_start_s <= 3600:
            raise ConfigError(f"cold start must be in [0, 3600] s, got {self.cold_start_s}")
        if not 0 <= self.overhead_s <= 60:
            raise ConfigError(f"overhead must be in [0, 60] s, got {self.overhead_s}")


class InstancePool:
    """When each instance is next free; assigns each batch a start time (mechanism)."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self.free_at = [0.0] * spec.warm  # time each instance finishes its current work
        self.queued_s = 0.0  # total time batches waited for an instance

    @property
    def size(self) -> int:
        return len(self.free_at)

    def run(self, now: float, service_s: float) -> float:
        """Place a batch dispatched at ``now`` that runs ``service_s``; return its end time."""
        i = min(range(len(self.free_at)), key=self.free_at.__getitem__)
        start = max(now, self.free_at[i])
        if start > now and len(self.free_at) < self.spec.max:
            cold = now + self.spec.cold_start_s
            if cold < start:  # a new instance beats the queue
                self.free_at.append(cold)
                i, start = len(self.free_at) - 1, cold
        self.queued_s += start - now
        self.free_at[i] = start + service_s
        return start + service_s
