"""Per-app request-rate estimates for re-planning, from counts per window.

Why not just the last window (the paper's choice, and the simulator's default): a plan
made from the last window lags a rising load by a whole window, and a plan too small
for the next minute costs SLOs, while one a little too large costs only money. The
predictive estimate ``max`` takes the larger of the last window and an EWMA of the
windows before (weight 0.5): it follows a rise at once and falls back over a couple
of windows, not on one quiet minute.

Why a floor from the declared rates (``seed(rates, floor_fraction)``): a server idle for a
few windows would otherwise plan for almost nothing — the cheapest plan for near-zero rates
splits the apps into small groups of batch 1 — and the first burst after the lull meets
that plan until the next window. The apps file's rates are what the user provisioned for;
by default (fraction 1) re-planning follows the load above them and never plans below them;
``--rate-floor 0`` lets an idle server shrink to the floor rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ESTIMATORS = ("last", "ewma", "max")
EWMA_WEIGHT = 0.5


@dataclass
class RateEstimator:
    """``observe(counts, window_s)`` once per window; ``estimate()`` the rates to plan for."""

    mode: str = "max"
    floor: float = 1e-3  # req/s: planners need a positive rate for every app
    minimum: dict[str, float] = field(default_factory=dict)  # per app: never plan below
    _ewma: dict[str, float] = field(default_factory=dict)
    _last: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ESTIMATORS:
            raise ValueError(f"rate estimator must be one of {', '.join(ESTIMATORS)}")

    def seed(self, rates: Mapping[str, float], floor_fraction: float = 0.0) -> None:
        """Start from planned rates (the apps file's) before anything was observed; never
        estimate an app below ``floor_fraction`` of its rate here."""
        if not 0 <= floor_fraction <= 1:
            raise ValueError(f"rate floor must be in [0, 1], got {floor_fraction}")
        self._ewma = dict(rates)
        self._last = dict(rates)
        self.minimum = {a: floor_fraction * r for a, r in rates.items()}

    def observe(self, counts: Mapping[str, int], window_s: float) -> None:
        for app in set(self._ewma) | set(counts):
            rate = counts.get(app, 0) / window_s
            prev = self._ewma.get(app, rate)
            self._ewma[app] = EWMA_WEIGHT * rate + (1 - EWMA_WEIGHT) * prev
            self._last[app] = rate

    def estimate(self) -> dict[str, float]:
        out = {}
        for app, last in self._last.items():
            if self.mode == "last":
                r = last
            elif self.mode == "ewma":
                r = self._ewma[app]
            else:
                r = max(last, self._ewma[app])
            out[app] = max(self.floor, self.minimum.get(app, 0.0), r)
        return out
