"""Service-time distribution used by the simulator.

The profiles give an average and a "maximum" (a fitted upper envelope, not a
percentile). We draw ``S ~ Uniform(L_avg - w, L_avg + w)`` with
``w = min(L_max - L_avg, L_avg)``: the mean is exactly ``L_avg`` (so simulated cost
matches the cost model), no draw exceeds ``L_max`` and none is negative. When
``L_max <= L_avg`` the service time is deterministic ``L_avg``.
"""

from __future__ import annotations

import numpy as np


def service_time_bounds(avg_s: float, max_s: float) -> tuple[float, float]:
    """Support ``(low, high)`` of the service-time distribution."""
    w = max(0.0, min(max_s - avg_s, avg_s))
    return avg_s - w, avg_s + w


def draw_service_time(avg_s: float, max_s: float, rng: np.random.Generator) -> float:
    lo, hi = service_time_bounds(avg_s, max_s)
    if hi <= lo:
        return avg_s
    return float(rng.uniform(lo, hi))
