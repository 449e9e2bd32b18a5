"""Run several planners on one workload and tabulate their costs side by side."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from batchwise.config.apps import AppSpec
from batchwise.config.plan import Plan
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.errors import PlanningError
from batchwise.perf.kinds import KINDS
from batchwise.planner import Algorithm, PlannerOptions, get_planner, plan

BASELINE_ALGORITHM = Algorithm.BATCH
"""Costs are normalised to this planner, as in the paper's Table I."""


@dataclass(frozen=True)
class CompareRow:
    algorithm: str
    cost_per_request: float | None  # full-batch cost per request (Eq. 6); None if it failed
    normalized_cost: float | None  # cost / the baseline's cost
    expected_cost_per_request: float | None  # with Poisson batch sizes
    groups: int
    gpu_groups: int
    planning_time_s: float
    slo_violations_predicted: int  # apps whose timeout + true L_max exceeds the SLO
    error: str | None = None


def compare(
    apps: Sequence[AppSpec],
    profile: ModelProfile,
    prices: PriceBook,
    algorithms: Sequence[str] | None = None,
    options: PlannerOptions | None = None,
    on_planner: Callable[[str], None] | None = None,
) -> tuple[list[CompareRow], dict[str, Plan]]:
    """Plan with each algorithm; one above its ``max_apps`` is skipped (row says so)."""
    names = list(algorithms) if algorithms else [a.value for a in Algorithm]
    plans: dict[str, Plan] = {}
    errors: dict[str, str] = {}
    for name in names:
        limit = getattr(get_planner(name), "max_apps", None)
        if limit is not None and len(apps) > limit:
            errors[name] = f"skipped: more than {limit} apps"
            continue
        if on_planner is not None:
            on_planner(name)  # progress display: which planner runs now
        try:
            plans[name] = plan(apps, profile, prices, name, options)
        except PlanningError as exc:
            errors[name] = str(exc)
    base_plan = plans.get(BASELINE_ALGORITHM.value)
    base = base_plan.cost_per_request if base_plan else None
    rows = []
    for name in names:
        p = plans.get(name)
        if p is None:
            rows.append(CompareRow(name, None, None, None, 0, 0, 0.0, 0, errors.get(name)))
            continue
        rows.append(
            CompareRow(
                algorithm=name,
                cost_per_request=p.cost_per_request,
                normalized_cost=(p.cost_per_request / base) if base else None,
                expected_cost_per_request=p.expected_cost_per_request,
                groups=len(p.groups),
                gpu_groups=sum(KINDS[g.function.kind].device == "gpu" for g in p.groups),
                planning_time_s=p.planning_time_s,
                slo_violations_predicted=len(p.slo_violations_predicted),
            )
        )
    return rows, plans


def rows_to_dicts(rows: Sequence[CompareRow]) -> list[dict]:
    return [asdict(r) for r in rows]
