"""The exact optimum over all set partitions (small n), by DP over subsets.

Every non-empty subset of apps is provisioned by exhaustive search of the whole
configuration grid; the cheapest partition is found with the classic
``f[mask] = min over sub ⊆ mask containing mask's lowest app of f[mask \\ sub] + cost[sub]``
recursion, O(3^n). Bell(9) = 21 147 partitions; 3^9 = 19 683 steps.
"""

from __future__ import annotations

import numpy as np

from batchwise.config.apps import AppSpec
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.errors import PlanningError
from batchwise.planner.base import (
    Part,
    PlannerOptions,
    TablePlanner,
    raise_if_hopeless,
)
from batchwise.planner.group import GroupSummary, best_row
from batchwise.planner.table import ConfigTable

EXACT_MAX_APPS = 12
"""Largest instance ``exact`` accepts (3^12 ≈ 531k subset steps)."""


class ExactPlanner(TablePlanner):
    name = "exact"
    max_apps = EXACT_MAX_APPS  # 2^n subsets

    def partition(
        self,
        apps: list[AppSpec],
        table: ConfigTable,
        profile: ModelProfile,
        prices: PriceBook,
        options: PlannerOptions,
    ) -> list[Part]:
        n = len(apps)
        raise_if_hopeless(apps, table)
        full = (1 << n) - 1
        cost = np.full(full + 1, np.inf)
        rows = np.full(full + 1, -1, dtype=int)
        for mask in range(1, full + 1):
            members = [apps[i] for i in range(n) if mask >> i & 1]
            g = GroupSummary.of(
                [a.slo for a in members], [a.rate for a in members], options.eq_timeout
            )
            row = best_row(table, g)
            if row is not None:
                rows[mask] = row
                cost[mask] = g.rate * float(table.cost[row])
        best = [np.inf] * (full + 1)
        choice = [0] * (full + 1)
        best[0] = 0.0
        for mask in range(1, full + 1):
            low = mask & -mask
            rest = mask ^ low
            sub = rest
            # Enumerate every subset of `rest`; the group is sub | low.
            while True:
                grp = sub | low
                c = best[mask ^ grp] + cost[grp]
                if c < best[mask]:
                    best[mask], choice[mask] = c, grp
                if sub == 0:
                    break
                sub = (sub - 1) & rest
        if not np.isfinite(best[full]):
            raise PlanningError("no feasible grouping exists for these apps")
        parts = []
        mask = full
        while mask:
            grp = choice[mask]
            shares = [(apps[i], apps[i].rate) for i in range(n) if grp >> i & 1]
            parts.append(Part(shares, int(rows[grp])))
            mask ^= grp
        return parts
