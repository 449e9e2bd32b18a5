"""Service times of a group's function, from its profile, calibrated by what instances measure.

Why calibrate: profiles are fitted on another day or machine (this one drifts by tens
of percent between days); admission must predict *today's* service times or it
either sheds requests that would have made it or admits ones that will not. The
profile gives the shape over batch sizes; one factor, an EWMA of measured over
predicted time, gives the level. The tail is learned as well: ``worst(b)`` is at
least the recent 99th percentile of measured/predicted times the profile's average,
because what makes a batch slow live (CPU-quota throttling, a busy gateway) is
exactly what a profile measured in isolation misses.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np

from batchwise.config.profiles import ModelProfile
from batchwise.perf.functions import Function
from batchwise.perf.latency import LatencyModel

EWMA_WEIGHT = 0.2
"""Weight of the newest batch in the calibration factor."""
FACTOR_BOUNDS = (0.2, 5.0)
"""The factor stays within these (one odd batch cannot make admission absurd)."""
TAIL_WINDOW = 256
"""Recent batches whose measured/predicted ratios give the tail."""
TAIL_MIN = 16
"""Batches needed before the learned tail is used."""
TAIL_QUANTILE = 0.99


class ServiceModel:
    """``avg(b)`` and ``worst(b)`` seconds on one instance of ``fn``; ``observe`` calibrates."""

    def __init__(self, profile: ModelProfile, fn: Function, max_batch: int) -> None:
        self._latency = LatencyModel(profile.cpu, profile.gpu)
        self._top = max(1, max_batch)
        self._planned_fn = fn
        self.resize(fn)
        self._planned = self._avg  # the tables at the size the group was planned for
        self.factor = 1.0
        self.observed = 0
        self._ratios: deque[float] = deque(maxlen=TAIL_WINDOW)
        self.tail = 0.0  # recent high quantile of measured / profile average (0: unknown)

    def resize(self, fn: Function) -> None:
        """The instances now run as ``fn`` (a vertical surge): the profile's shape at its
        size; the calibration (today's level and tail against the profile) carries over."""
        model, top = self._latency, self._top
        self._avg = [0.0] + [model.avg(fn, b) for b in range(1, top + 1)]
        self._max = [0.0] + [max(model.max(fn, b), self._avg[b]) for b in range(1, top + 1)]

    def speedup(self, b: int) -> float:
        """How many instances of the planned size one at today's size is worth at batch
        ``b``, by the profile (1 unless surged; a model flat in vCPUs never gains)."""
        b = self._b(b)
        return self._planned[b] / self._avg[b] if self._avg[b] > 0 else 1.0

    def gain(self, vcpu: float, b: int) -> float:
        """How many instances of the planned size one at ``vcpu`` would be worth at batch
        ``b``, by the profile (what growing an instance vertically buys)."""
        b = self._b(b)
        at = self._latency.avg(replace(self._planned_fn, vcpu=vcpu), b)
        return self._planned[b] / at if at > 0 else 1.0

    def _b(self, b: int) -> int:
        return min(max(1, b), len(self._avg) - 1)

    def avg(self, b: int) -> float:
        return self.factor * self._avg[self._b(b)]

    def worst(self, b: int) -> float:
        b = self._b(b)
        return max(self.factor * self._max[b], self.tail * self._avg[b])

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
        self._ratios.append(ratio)
        if len(self._ratios) >= TAIL_MIN and self.observed % 8 == 0:
            self.tail = float(np.quantile(self._ratios, TAIL_QUANTILE))
