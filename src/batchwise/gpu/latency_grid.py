"""A profile grid as a continuous latency model: any batch at any share of the device.

Why: the co-scaling simulation (:mod:`batchwise.sim.gpu_serving`) runs batches of any
size (a batch holds what was queued, up to the function's batch size) at shares the
vertical controller picks every tick (25 %, 47 %, …), while a grid
(:func:`batchwise.gpu.measure.load_grid`) has only powers of two at 10 % steps.

Interpolation, documented because results depend on it:

* **share** — linear between the grid's shares; below the smallest share the latency
  grows as ``smallest / share`` (a compute-bound kernel slows in proportion to the SMs
  taken away); above the largest it stays flat (no share beyond the device exists).
* **batch** — linear between the grid's batch sizes at that share; below the smallest
  batch the smallest batch's latency (a batch never runs faster than its launch cost);
  above the largest batch, linear extrapolation through the last two batch sizes.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from pathlib import Path

from batchwise.errors import ConfigError
from batchwise.gpu.measure import Measurement, load_grid


class LatencyGrid:
    """Latency (s per batch) of ``batch`` items at ``share`` (0–1] of the device."""

    def __init__(self, points: Mapping[tuple[int, int], Measurement], source: str = "grid") -> None:
        self.source = source
        shares = sorted({sm for _, sm in points})
        batches = sorted({b for b, _ in points})
        missing = [(b, sm) for b in batches for sm in shares if (b, sm) not in points]
        if missing:
            b, sm = missing[0]
            raise ConfigError(f"the grid is not complete: no point for batch {b} at {sm} % SM "
                              f"({len(missing)} missing)", file=source)  # fmt: skip
        self.shares = [sm / 100 for sm in shares]
        self.batches = batches
        self._lat = {(b, sm / 100): points[(b, sm)].latency_s for b, sm in points}

    @classmethod
    def from_csv(cls, path: str | Path) -> LatencyGrid:
        return cls(load_grid(path), str(path))

    @property
    def max_batch(self) -> int:
        return self.batches[-1]

    def _at_share(self, batch: int, share: float) -> float:
        """Latency of a grid batch size at any share."""
        s = self.shares
        if share <= s[0]:
            return self._lat[(batch, s[0])] * s[0] / max(share, 1e-9)
        if share >= s[-1]:
            return self._lat[(batch, s[-1])]
        i = bisect.bisect_right(s, share)
        lo, hi = s[i - 1], s[i]
        w = (share - lo) / (hi - lo)
        return (1 - w) * self._lat[(batch, lo)] + w * self._lat[(batch, hi)]

    def latency(self, batch: float, share: float) -> float:
        """Seconds to run ``batch`` items (≥ 1) at ``share`` of the device (> 0)."""
        b = self.batches
        if batch <= b[0] or len(b) == 1:
            return self._at_share(b[0], share) if batch <= b[0] else (
                self._at_share(b[0], share) * batch / b[0])  # fmt: skip
        if batch >= b[-1]:
            lo, hi = b[-2], b[-1]
        else:
            i = bisect.bisect_right(b, batch)
            lo, hi = b[i - 1], b[i]
            if lo == batch:
                return self._at_share(lo, share)
        y0, y1 = self._at_share(lo, share), self._at_share(hi, share)
        return y0 + (y1 - y0) * (batch - lo) / (hi - lo)

    def throughput(self, batch: float, share: float) -> float:
        """Items per second when batches of ``batch`` run back to back at ``share``."""
        return batch / self.latency(batch, share)
