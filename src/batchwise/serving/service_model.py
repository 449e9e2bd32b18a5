"""Service times of a group's function, from its profile, calibrated by what instances measure.

Why calibrate: profiles are fitted on another day or machine (this one drifts by tens
of percent between days); admission must predict *today's* service times or it
either sheds requests that would have made it or admits ones that will not. The
profile gives the shape over batch sizes; one factor, an EWMA of measured over
predicted time, gives the level.
"""

from __future__ import annotations

from batchwise.config.profiles import ModelProfile
from batchwise.perf.functions import Function
from batchwise.perf.latency import LatencyModel

EWMA_WEIGHT = 0.2
"""Weight of the newest batch in the calibration factor."""
FACTOR_BOUNDS = (0.2, 5.0)
"""The factor stays within these (one odd batch cannot make admission absurd)."""


class ServiceModel:
    """``avg(b)`` and ``worst(b)`` seconds on one instance of ``fn``; ``observe`` calibrates."""

    def __init__(self, profile: ModelProfile, fn: Function, max_batch: int) -> None:
        model = LatencyModel(profile.cpu, profile.gpu)
        top = max(1, max_batch)
        self._avg = [0.0] + [model.avg(fn, b) for b in range(1, top + 1)]
        self._max = [0.0] + [max(model.max(fn, b), self._avg[b]) for b in range(1, top + 1)]
        self.factor = 1.0
        self.observed = 0

    def _b(self, b: int) -> int:
        return min(max(1, b), len(self._avg) - 1)

    def avg(self, b: int) -> float:
        return self.factor * self._avg[self._b(b)]

    def worst(self, b: int) -> float:
        return self.factor * self._max[self._b(b)]

    def observe(self, b: int, service_s: float) -> None:
        """A batch of ``b`` items took ``service_s`` on an instance (gateway-measured)."""
        predicted = self._avg[self._b(b)]
        if predicted <= 0 or service_s <= 0:
            return
        ratio = service_s / predicted
        w = 1.0 if self.observed == 0 else EWMA_WEIGHT
        lo, hi = FACTOR_BOUNDS
        self.factor = min(hi, max(lo, (1 - w) * self.factor + w * ratio))
        self.observed += 1
