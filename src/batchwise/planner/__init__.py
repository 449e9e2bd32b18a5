"""Planners: group apps, pick functions, batch sizes and timeouts at minimum cost.

All planners share one interface, ``plan(apps, profile, prices) -> Plan``; look them
up by name with :func:`get_planner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from batchwise.config.apps import AppSpec
from batchwise.config.plan import Plan
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.errors import BatchwiseError
from batchwise.planner.base import Planner, PlannerOptions
from batchwise.planner.baselines import MBSPlanner, PerAppPlanner
from batchwise.planner.dp import DPPlanner
from batchwise.planner.exact import EXACT_MAX_APPS, ExactPlanner
from batchwise.planner.harmony import HarmonyPlanner


class Algorithm(StrEnum):
    """Planner names accepted by ``--algorithm``."""

    DP = "dp"
    HARMONY = "harmony"
    BATCH = "batch"
    MBS = "mbs"
    PER_APP = "per-app"
    CPU_ONLY = "cpu-only"
    GPU_ONLY = "gpu-only"
    EXACT = "exact"


DEFAULT_ALGORITHM = Algorithm.DP
"""The default planner: within 1% of exact on small instances, 1000 apps in < 1 s."""


def get_planner(name: str | Algorithm) -> Planner:
    """Factory keyed by :class:`Algorithm`; raises on unknown names."""
    try:
        algo = Algorithm(name)
    except ValueError:
        known = ", ".join(a.value for a in Algorithm)
        raise BatchwiseError(f"unknown algorithm {name!r}; choose one of: {known}") from None
    factories = {
        Algorithm.DP: lambda: DPPlanner(),
        Algorithm.HARMONY: lambda: HarmonyPlanner(),
        Algorithm.BATCH: lambda: PerAppPlanner("batch", ("cpu",), deterministic=True),
        Algorithm.MBS: lambda: MBSPlanner(),
        Algorithm.PER_APP: lambda: PerAppPlanner("per-app"),
        Algorithm.CPU_ONLY: lambda: DPPlanner("cpu-only", kinds=("cpu",)),
        Algorithm.GPU_ONLY: lambda: DPPlanner("gpu-only", kinds=("gpu", "gpu-sm")),
        Algorithm.EXACT: lambda: ExactPlanner(),
    }
    return factories[algo]()


def plan(
    apps: Sequence[AppSpec],
    profile: ModelProfile,
    prices: PriceBook,
    algorithm: str | Algorithm = DEFAULT_ALGORITHM,
    options: PlannerOptions | None = None,
) -> Plan:
    """Plan with the named algorithm (default: ``dp``)."""
    return get_planner(algorithm).plan(apps, profile, prices, options or PlannerOptions())


__all__ = [
    "DEFAULT_ALGORITHM",
    "EXACT_MAX_APPS",
    "Algorithm",
    "Planner",
    "PlannerOptions",
    "get_planner",
    "plan",
]
