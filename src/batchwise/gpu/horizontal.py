"""Dilu's lazy horizontal scaler: instances from a window of requests-per-second samples.

Why lazy: the vertical scaler (:mod:`batchwise.gpu.vertical`) absorbs a burst within a
tick by lending an instance its limit, so adding an instance — a cold start of seconds
and a whole share reserved — is only worth it for load that persists. Once per
:data:`INTERVAL_S` the scaler records whether the last second's RPS was over the
instances' capacity (``rps > n × per_instance``) or under what one fewer could carry
(``rps < (n − 1) × per_instance``); over :data:`WINDOW_S` samples it scales out when
at least :data:`OUT_VOTES` were over, in when at least :data:`IN_VOTES` were under
(and ``n > 1``), and clears the window after acting so one episode is not counted
twice. Scale-out asks for as many instances as the over-capacity samples' median
needs (at least one more); scale-in removes one. Bounds come from the shared
guardrails (:func:`batchwise.scaling.guardrails.apply_bounds`). Pure: a sample and
the window in, a count and the new window out.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from batchwise.scaling.guardrails import apply_bounds

INTERVAL_S = 1.0
"""Seconds between decisions (one RPS sample each)."""
WINDOW_S = 40
"""Samples remembered (one per second)."""
OUT_VOTES = 20
"""Over-capacity samples in the window that scale out."""
IN_VOTES = 30
"""Under-capacity samples in the window that scale in."""


@dataclass(frozen=True)
class LazyRule:
    """Invariant: ``1 <= out_votes <= window`` and ``1 <= in_votes <= window``; ``lo <= hi``."""

    per_instance: float  # requests per second one instance carries
    lo: int = 1
    hi: int = 64
    window: int = WINDOW_S
    out_votes: int = OUT_VOTES
    in_votes: int = IN_VOTES

    def __post_init__(self) -> None:
        if not (self.per_instance > 0 and 1 <= self.lo <= self.hi):
            raise ValueError("need per_instance > 0 and 1 <= lo <= hi")
        if not (1 <= self.out_votes <= self.window and 1 <= self.in_votes <= self.window):
            raise ValueError("votes must lie in [1, window]")


@dataclass(frozen=True)
class Window:
    """The last ``rule.window`` RPS samples, oldest first."""

    samples: tuple[float, ...] = ()


def decide(rule: LazyRule, window: Window, rps: float, n: int) -> tuple[int, Window]:
    """The instance count after one more RPS sample, and the window to keep."""
    samples = (*window.samples, rps)[-rule.window :]
    over = [r for r in samples if r > n * rule.per_instance]
    under = sum(1 for r in samples if r < (n - 1) * rule.per_instance)
    if len(over) >= rule.out_votes:
        need = math.ceil(statistics.median(over) / rule.per_instance)
        want = apply_bounds(max(n + 1, need), rule.lo, rule.hi)
        return want, Window()
    if n > rule.lo and under >= rule.in_votes:
        return apply_bounds(n - 1, rule.lo, rule.hi), Window()
    return apply_bounds(n, rule.lo, rule.hi), Window(samples)


def initial_instances(rule: LazyRule, rps: float) -> int:
    """Instances to start with for a first observed rate (before any window exists)."""
    return apply_bounds(max(1, math.ceil(rps / rule.per_instance)), rule.lo, rule.hi)
