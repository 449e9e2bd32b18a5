"""The default planner: optimal contiguous grouping by dynamic programming, then local moves.

Why it beats the paper's two-stage merge: HarmonyBatch only merges SLO-adjacent
groups greedily. Here, with apps sorted by SLO, the cost of *every* contiguous
group ``i..j`` is exact (all groups at once with numpy) and a DP picks the
cheapest partition into contiguous groups. Local moves (move one app, merge two
groups) then reach non-contiguous optima. Every final group is re-provisioned
exactly.

Many apps: pricing every contiguous group is O(n²), so above ``MAX_UNITS`` apps
the SLO-sorted apps are first cut into ``MAX_UNITS`` runs of neighbours ("units",
equal app counts) and the DP partitions units. A unit is priced as if all its apps
had its tightest SLO, which is conservative (a tighter SLO only shrinks the
feasible configurations), so every group the DP keeps is feasible for its real
apps. This replaced a fixed window of 128 apps with long groups priced by an upper
bound: on 10 000 random apps it is ~20x faster and the plans ~10 % cheaper, because
at that scale the cheapest groups span hundreds of apps (bench/RESULTS.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass

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
from batchwise.planner.group import GroupSummary, best_row, best_rows_batched
from batchwise.planner.table import ALL_KINDS, ConfigTable

MAX_UNITS = 256
"""Most units the DP partitions (it prices all O(units²) contiguous groups, ~0.1 s at 256);
more apps are coarsened into this many runs. 512 units gave plans 0.2–0.4 % cheaper on
10 000 apps at twice the time."""

LOCAL_SEARCH_MAX_APPS = 120
"""Local moves run only up to this many apps (they are O(n * groups) per pass)."""

LOCAL_SEARCH_MAX_PASSES = 20


def unit_edges(n: int, max_units: int) -> np.ndarray:
    """Boundaries of the units over ``n`` SLO-sorted apps: one app each up to ``max_units``."""
    if n <= max_units:
        return np.arange(n + 1)
    return np.linspace(0, n, max_units + 1).round().astype(int)


def _group_summaries(
    slo: np.ndarray, rate: np.ndarray, formula: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s1, R, T0) of every contiguous group i..i+d as (m, m) arrays (Eq. 5 folded)."""
    m = len(slo)
    s1 = np.repeat(slo[:, None], m, axis=1)
    big_r = np.zeros((m, m))
    t0 = np.zeros((m, m))
    big_r[:, 0] = rate
    t0[:, 0] = slo
    for d in range(1, m):
        idx = np.minimum(np.arange(m) + d, m - 1)
        valid = np.arange(m) + d < m
        r1 = big_r[:, d - 1]
        r2 = np.where(valid, rate[idx], 0.0)
        t2 = slo[idx]
        prev = t0[:, d - 1]
        if formula == "tightest":
            inc = np.zeros(m)
        else:
            inc = r2 / (r1 + r2) * (1.0 - np.exp(-r1 * (t2 - prev))) / r1
        t0[:, d] = prev + np.where(valid, inc, 0.0)
        big_r[:, d] = r1 + r2
    return s1, big_r, t0


def _contiguous_dp(
    apps: list[AppSpec], table: ConfigTable, formula: str, max_units: int = MAX_UNITS
) -> list[list[int]]:
    """Cheapest partition of SLO-sorted apps into contiguous groups of units (index lists)."""
    edges = unit_edges(len(apps), max_units)
    m = len(edges) - 1
    app_rate = np.array([a.rate for a in apps])
    slo = np.array([apps[i].slo for i in edges[:-1]])  # a unit's tightest SLO
    rate = np.add.reduceat(app_rate, edges[:-1])
    s1, big_r, t0 = _group_summaries(slo, rate, formula)
    cost, _ = best_rows_batched(table, s1, big_r, t0)
    valid = np.arange(m)[:, None] + np.arange(m)[None, :] < m
    cost = np.where(valid, cost, np.inf)
    cum = np.concatenate([[0.0], np.cumsum(rate)])
    f = np.full(m + 1, np.inf)
    f[0] = 0.0
    back = np.zeros(m + 1, dtype=int)
    # Invariant: f[k] is the cheapest total (rate x cost) of units[:k];
    # back[k] is where the last group of that optimum starts.
    for j in range(m):
        starts = np.arange(j + 1)
        cand = f[starts] + (cum[j + 1] - cum[starts]) * cost[starts, j - starts]
        k = int(np.argmin(cand))
        f[j + 1] = cand[k]
        back[j + 1] = k
    if not np.isfinite(f[m]):
        raise PlanningError("no feasible grouping exists for these apps")
    groups: list[list[int]] = []
    j = m
    while j > 0:
        i = back[j]
        groups.append(list(range(edges[i], edges[j])))
        j = i
    return groups[::-1]


@dataclass
class _Search:
    """Local-move search state over a partition (lists of app indices)."""

    apps: list[AppSpec]
    table: ConfigTable
    formula: str

    def cost(self, group: list[int]) -> float:
        if not group:
            return 0.0
        g = GroupSummary.of(
            [self.apps[i].slo for i in group], [self.apps[i].rate for i in group], self.formula
        )
        row = best_row(self.table, g)
        return np.inf if row is None else g.rate * float(self.table.cost[row])

    def improve(self, groups: list[list[int]]) -> list[list[int]]:
        costs = [self.cost(g) for g in groups]
        for _ in range(LOCAL_SEARCH_MAX_PASSES):
            if not self._one_pass(groups, costs):
                break
        return [g for g in groups if g]

    def _one_pass(self, groups: list[list[int]], costs: list[float]) -> bool:
        improved = False
        # Merge two groups (any two, not only SLO neighbours).
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if not groups[a] or not groups[b]:
                    continue
                merged = groups[a] + groups[b]
                c = self.cost(merged)
                if c < costs[a] + costs[b] - 1e-15:
                    groups[a], groups[b] = merged, []
                    costs[a], costs[b] = c, 0.0
                    improved = True
        # Move one app to another group or to a group of its own.
        for src in range(len(groups)):
            for app in list(groups[src]):
                if app not in groups[src] or len(groups[src]) == 1:
                    continue
                rest = [x for x in groups[src] if x != app]
                rest_cost = self.cost(rest)
                best_gain, best_dst, best_cost = 1e-15, None, 0.0
                for dst in [*range(len(groups)), -1]:
                    if dst == src or (dst >= 0 and not groups[dst]):
                        continue
                    target = [app] if dst < 0 else [*groups[dst], app]
                    c = self.cost(target)
                    old = 0.0 if dst < 0 else costs[dst]
                    gain = costs[src] + old - rest_cost - c
                    if gain > best_gain:
                        best_gain, best_dst, best_cost = gain, dst, c
                if best_dst is None:
                    continue
                groups[src], costs[src] = rest, rest_cost
                if best_dst < 0:
                    groups.append([app])
                    costs.append(best_cost)
                else:
                    groups[best_dst] = [*groups[best_dst], app]
                    costs[best_dst] = best_cost
                improved = True
        return improved


class DPPlanner(TablePlanner):
    """Contiguous-group DP plus local moves (the default)."""

    def __init__(
        self,
        name: str = "dp",
        kinds: tuple[str, ...] = ALL_KINDS,
        max_units: int = MAX_UNITS,
        local_search: bool = True,
    ) -> None:
        self.name = name
        self.kinds = kinds
        self.max_units = max_units
        self.local_search = local_search

    def partition(
        self,
        apps: list[AppSpec],
        table: ConfigTable,
        profile: ModelProfile,
        prices: PriceBook,
        options: PlannerOptions,
    ) -> list[Part]:
        ordered = sorted(apps, key=lambda a: (a.slo, a.name))
        raise_if_hopeless(ordered, table)
        groups = _contiguous_dp(ordered, table, options.eq_timeout, self.max_units)
        if self.local_search and len(ordered) <= LOCAL_SEARCH_MAX_APPS:
            groups = _Search(ordered, table, options.eq_timeout).improve(groups)
        parts = []
        for grp in groups:
            shares = [(ordered[i], ordered[i].rate) for i in grp]
            g = GroupSummary.of(
                [a.slo for a, _ in shares], [r for _, r in shares], options.eq_timeout
            )
            row = best_row(table, g)
            assert row is not None  # the DP only keeps feasible groups
            parts.append(Part(shares, row))
        return parts
