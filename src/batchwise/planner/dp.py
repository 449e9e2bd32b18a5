"""The default planner: optimal contiguous grouping by dynamic programming, then local moves.

Why it beats the paper's two-stage merge: HarmonyBatch only merges SLO-adjacent
groups greedily. Here, with apps sorted by SLO, the cost of *every* contiguous
group ``i..j`` (up to ``window`` apps, all groups at once with numpy) is exact,
and a DP picks the cheapest partition into contiguous groups. Groups longer
than the window are priced with the window's cost, an upper bound because a
group's cost per request never rises when an app with a looser SLO joins it.
Local moves (move one app, merge two groups) then reach non-contiguous optima.
Every final group is re-provisioned exactly.
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

DEFAULT_WINDOW = 128
"""Longest contiguous group (apps) priced exactly by the DP."""

LOCAL_SEARCH_MAX_APPS = 120
"""Local moves run only up to this many apps (they are O(n * groups) per pass)."""

LOCAL_SEARCH_MAX_PASSES = 20


def _window_summaries(
    slo: np.ndarray, rate: np.ndarray, window: int, formula: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s1, R, T0) of every group i..i+d, d < window, as (n, window) arrays (Eq. 5 folded)."""
    n = len(slo)
    s1 = np.repeat(slo[:, None], window, axis=1)
    big_r = np.zeros((n, window))
    t0 = np.zeros((n, window))
    big_r[:, 0] = rate
    t0[:, 0] = slo
    for d in range(1, window):
        idx = np.minimum(np.arange(n) + d, n - 1)
        valid = np.arange(n) + d < n
        r1 = big_r[:, d - 1]
        r2 = np.where(valid, rate[idx], 0.0)
        t2 = slo[idx]
        prev = t0[:, d - 1]
        if formula == "tightest":
            inc = np.zeros(n)
        else:
            inc = r2 / (r1 + r2) * (1.0 - np.exp(-r1 * (t2 - prev))) / r1
        t0[:, d] = prev + np.where(valid, inc, 0.0)
        big_r[:, d] = r1 + r2
    return s1, big_r, t0


def _contiguous_dp(
    apps: list[AppSpec], table: ConfigTable, window: int, formula: str
) -> list[list[int]]:
    """Cheapest partition of SLO-sorted apps into contiguous groups (index lists)."""
    n = len(apps)
    slo = np.array([a.slo for a in apps])
    rate = np.array([a.rate for a in apps])
    w = min(window, n)
    s1, big_r, t0 = _window_summaries(slo, rate, w, formula)
    cost, _ = best_rows_batched(table, s1, big_r, t0)
    valid = np.arange(n)[:, None] + np.arange(w)[None, :] < n
    cost = np.where(valid, cost, np.inf)
    tail_cost = cost[:, w - 1]  # upper bound for groups longer than the window
    cum = np.concatenate([[0.0], np.cumsum(rate)])
    f = np.full(n + 1, np.inf)
    f[0] = 0.0
    back = np.zeros(n + 1, dtype=int)
    # Invariant: f[k] is the cheapest total (rate x cost) of apps[:k];
    # back[k] is where the last group of that optimum starts.
    for j in range(n):
        lo = max(0, j - w + 1)
        starts = np.arange(lo, j + 1)
        cand = f[starts] + (cum[j + 1] - cum[starts]) * cost[starts, j - starts]
        if lo > 0:
            far = np.arange(0, lo)
            cand = np.concatenate([f[far] + (cum[j + 1] - cum[far]) * tail_cost[far], cand])
            starts = np.concatenate([far, starts])
        k = int(np.argmin(cand))
        f[j + 1] = cand[k]
        back[j + 1] = starts[k]
    if not np.isfinite(f[n]):
        raise PlanningError("no feasible grouping exists for these apps")
    groups: list[list[int]] = []
    j = n
    while j > 0:
        i = back[j]
        groups.append(list(range(i, j)))
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
        window: int = DEFAULT_WINDOW,
        local_search: bool = True,
    ) -> None:
        self.name = name
        self.kinds = kinds
        self.window = window
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
        groups = _contiguous_dp(ordered, table, self.window, options.eq_timeout)
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
