"""Baselines from the paper: BATCH, MBS+, and simple per-app / single-kind planners.

* ``batch`` (Ali et al., SC'20): CPU only, one group per app, exhaustive search,
  but it budgets with *average* latency as if latency were deterministic, so its
  timeouts are too long and it violates SLOs in simulation, as in the paper.
* ``mbs`` (MBS+): split the total rate evenly into k groups (apps in SLO order, an
  app may be split across two groups), provision each exhaustively with CPU and
  GPU; best k. A grid over k replaces the paper's Bayesian optimisation.
* ``per-app``: the best function for each app alone (no merging).
"""

from __future__ import annotations

from collections.abc import Sequence

from batchwise.config.apps import AppSpec
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.errors import PlanningError
from batchwise.planner.base import (
    Part,
    PlannerOptions,
    TablePlanner,
    provision_or_fail,
)
from batchwise.planner.table import ALL_KINDS, ConfigTable

RATE_SPLIT_EPS = 1e-9


class PerAppPlanner(TablePlanner):
    """One group per app, each provisioned exhaustively."""

    def __init__(self, name: str, kinds: tuple[str, ...] = ALL_KINDS, deterministic: bool = False):
        self.name = name
        self.kinds = kinds
        self.deterministic = deterministic

    def partition(
        self,
        apps: list[AppSpec],
        table: ConfigTable,
        profile: ModelProfile,
        prices: PriceBook,
        options: PlannerOptions,
    ) -> list[Part]:
        parts = []
        for app in apps:
            shares = [(app, app.rate)]
            parts.append(Part(shares, provision_or_fail(table, shares, options.eq_timeout)))
        return parts


def even_split(apps: Sequence[AppSpec], k: int) -> list[list[tuple[AppSpec, float]]]:
    """Cut the SLO-ordered rate line into k chunks of equal rate (apps may straddle a cut)."""
    ordered = sorted(apps, key=lambda a: (a.slo, a.name))
    target = sum(a.rate for a in ordered) / k
    chunks: list[list[tuple[AppSpec, float]]] = [[]]
    room = target
    for app in ordered:
        left = app.rate
        while left > RATE_SPLIT_EPS:
            take = min(left, room)
            chunks[-1].append((app, take))
            left -= take
            room -= take
            if room <= RATE_SPLIT_EPS and len(chunks) < k:
                chunks.append([])
                room = target
    return [c for c in chunks if c]


class MBSPlanner(TablePlanner):
    """MBS+: even rate split into k groups, best k, CPU or GPU per group."""

    name = "mbs"
    max_apps = 500  # tries every k = 1..n splits: quadratic, 500 apps take ~5 s

    def partition(
        self,
        apps: list[AppSpec],
        table: ConfigTable,
        profile: ModelProfile,
        prices: PriceBook,
        options: PlannerOptions,
    ) -> list[Part]:
        best: tuple[float, list[Part]] | None = None
        last_error: PlanningError | None = None
        for k in range(1, len(apps) + 1):
            try:
                parts = [
                    Part(chunk, provision_or_fail(table, chunk, options.eq_timeout))
                    for chunk in even_split(apps, k)
                ]
            except PlanningError as exc:
                last_error = exc
                continue
            total = sum(sum(r for _, r in p.shares) * float(table.cost[p.row]) for p in parts)
            if best is None or total < best[0]:
                best = (total, parts)
        if best is None:
            raise last_error or PlanningError("no feasible MBS split")
        return best[1]
