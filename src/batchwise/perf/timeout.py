"""Equivalent timeout (Eq. 5) and batch reachability.

A group of apps with per-app timeouts behaves like one app with rate R = sum(r)
and an equivalent timeout T_eq. For two apps with t1 <= t2:
``T_eq = t1 + r2/(r1+r2) * (1 - exp(-r1 (t2 - t1))) / r1``: the batch waits t1
unless the first request came from app 2 and no app-1 request arrived within
t2 - t1. More apps fold pairwise in timeout order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

EqTimeoutFormula = Literal["eq5", "tightest"]
"""``eq5``: the paper's Eq. 5 (default). ``tightest``: T_eq = min(t), a conservative bound."""


def equivalent_timeout(
    timeouts: Sequence[float], rates: Sequence[float], formula: EqTimeoutFormula = "eq5"
) -> tuple[float, float]:
    """Return ``(T_eq, R)`` for apps with the given timeouts (s) and rates (req/s)."""
    if len(timeouts) != len(rates) or not timeouts:
        raise ValueError("timeouts and rates must be non-empty and of equal length")
    pairs = sorted(zip(timeouts, rates, strict=True))
    t_eq, r_sum = pairs[0]
    if formula == "tightest":
        return t_eq, float(sum(rates))
    for t2, r2 in pairs[1:]:
        r1 = r_sum
        if r1 <= 0:
            t_eq, r_sum = t2, r2
            continue
        t_eq = t_eq + (r2 / (r1 + r2)) * (1.0 - math.exp(-r1 * (t2 - t_eq))) / r1
        r_sum = r1 + r2
    return t_eq, r_sum


def max_reachable_batch(total_rate: float, t_eq: float) -> int:
    """Largest batch that arrivals can fill within T_eq: floor(R * T_eq) + 1."""
    if t_eq <= 0 or total_rate <= 0:
        return 1
    return math.floor(total_rate * t_eq + 1e-9) + 1
