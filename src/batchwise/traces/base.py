"""The arrival-trace type every source produces and every consumer reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ArrivalTrace:
    """Request arrival times per app, in seconds from the start of the trace.

    Invariants: every array is sorted ascending, 1-D float64, and every value lies
    in ``[0, duration_s)``.
    """

    arrivals: dict[str, np.ndarray] = field(default_factory=dict)
    duration_s: float = 0.0

    def count(self, app: str | None = None) -> int:
        if app is not None:
            return len(self.arrivals.get(app, ()))
        return int(sum(len(a) for a in self.arrivals.values()))

    def mean_rate(self, app: str) -> float:
        return self.count(app) / self.duration_s if self.duration_s > 0 else 0.0
