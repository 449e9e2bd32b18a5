"""Provisioning one group: the cheapest feasible configuration for a set of apps.

A group is summarised by ``(s1, R, T0)``: its tightest SLO, its total rate and
Eq. 5 folded over its SLOs (see :mod:`batchwise.planner.table`). Two provisioners:

* :func:`best_row` — exact, scans the whole grid (the ``exact`` planner uses this);
* :func:`best_rows_batched` — the same answer for many groups at once via the
  per-batch-size step functions (the DP planner uses this).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from batchwise.perf.timeout import EqTimeoutFormula, equivalent_timeout
from batchwise.planner.table import ConfigTable

REACH_EPS = 1e-9
"""Tolerance (requests) on the reachability test b - 1 <= R * T_eq."""


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """What provisioning needs to know about a group. Invariant: ``s1 <= t0``."""

    s1: float  # tightest SLO in the group (s)
    rate: float  # total request rate R (req/s)
    t0: float  # Eq. 5 folded over the SLOs (s); T_eq = t0 - L_max

    @staticmethod
    def of(
        slos: Sequence[float], rates: Sequence[float], formula: EqTimeoutFormula = "eq5"
    ) -> GroupSummary:
        t0, r = equivalent_timeout(slos, rates, formula)
        return GroupSummary(min(slos), r, t0)


def feasible_mask(table: ConfigTable, g: GroupSummary) -> np.ndarray:
    budget = g.rate * (g.t0 - table.lat_max)
    return (table.lat_max <= g.s1) & (table.batch - 1 <= budget + REACH_EPS)


def best_row(table: ConfigTable, g: GroupSummary) -> int | None:
    """Exhaustive search over the grid: row of the cheapest feasible config, or None."""
    cost = np.where(feasible_mask(table, g), table.cost, np.inf)
    i = int(np.argmin(cost))
    return i if np.isfinite(cost[i]) else None


def best_rows_batched(
    table: ConfigTable, s1: np.ndarray, rate: np.ndarray, t0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best cost and row for many groups at once (arrays of equal shape); row -1 if none."""
    best = np.full(s1.shape, np.inf)
    row = np.full(s1.shape, -1, dtype=int)
    safe_rate = np.where(rate > 0, rate, np.inf)
    for b, (lat, prefmin, arg) in enumerate(table.steps, start=1):
        if len(lat) == 0:
            continue
        budget = np.minimum(s1, t0 - (b - 1) / safe_rate + REACH_EPS / safe_rate)
        if b == 1:
            budget = s1
        k = np.searchsorted(lat, budget, side="right") - 1
        ok = k >= 0
        kk = np.where(ok, k, 0)
        cand = np.where(ok, prefmin[kk], np.inf)
        better = cand < best
        best = np.where(better, cand, best)
        row = np.where(better, arg[kk], row)
    return best, row
