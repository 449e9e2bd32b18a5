"""The multi-SLO batching rule, shared by the simulator and the live gateway.

A group buffers requests of several apps. It dispatches when the buffer holds
``batch_size`` requests, or when the oldest pending request of *any* app has
waited that app's timeout (``t_w = s_w - L_max``), whichever comes first. The
policy is pure: it reads a snapshot and returns a decision; the mechanism (the
simulator's event loop or the gateway's asyncio task) owns the queue and the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DEADLINE_EPSILON_S = 1e-9
"""Slack (seconds) when comparing ``now`` with a deadline, against float rounding."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A buffered request. Invariant: ``arrival_s`` is the time it entered the buffer."""

    request_id: int
    app: str
    arrival_s: float


@dataclass(frozen=True, slots=True)
class BatchContext:
    """Snapshot the policy decides on. ``pending`` is in arrival (FIFO) order."""

    now: float
    pending: Sequence[Pending]


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """What to do now. Invariant: ``len(dispatch) <= batch_size``; dispatch is a FIFO prefix."""

    dispatch: tuple[int, ...] = ()  # request ids to send as one batch now (empty: none)
    wake_at: float | None = None  # next time the policy must be asked again (None: on arrival)

    @staticmethod
    def make_empty() -> BatchDecision:
        return BatchDecision()


@dataclass(frozen=True)
class MultiSloBatchPolicy:
    """Dispatch when full or when any pending request reaches its app's timeout."""

    batch_size: int
    timeouts_s: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for app, t in self.timeouts_s.items():
            if t < 0 or math.isnan(t):
                raise ValueError(f"timeout of app {app!r} must be >= 0, got {t}")

    def deadline(self, req: Pending) -> float:
        """When ``req`` forces a dispatch (arrival + its app's timeout; batch 1: at once)."""
        if self.batch_size == 1:
            return req.arrival_s
        return req.arrival_s + self.timeouts_s.get(req.app, 0.0)

    def decide(self, ctx: BatchContext) -> BatchDecision:
        pending = ctx.pending
        if not pending:
            return BatchDecision.make_empty()
        if len(pending) >= self.batch_size:
            ids = tuple(p.request_id for p in pending[: self.batch_size])
            rest = pending[self.batch_size :]
            wake = min((self.deadline(p) for p in rest), default=None)
            return BatchDecision(ids, wake)
        earliest = min(self.deadline(p) for p in pending)
        if ctx.now + DEADLINE_EPSILON_S >= earliest:
            return BatchDecision(tuple(p.request_id for p in pending), None)
        return BatchDecision((), earliest)
