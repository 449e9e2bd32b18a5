"""The planner interface and the plumbing every planner shares.

A planner turns ``(apps, profile, prices)`` into a :class:`Plan`. Internally each
planner only decides a *partition* (which app shares go together, and which table
row serves each part); :func:`assemble_plan` turns that into timeouts, costs and
predictions the same way for all of them, so plans are comparable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from batchwise.clock import Stopwatch
from batchwise.config.apps import AppSpec
from batchwise.config.plan import FunctionSpec, GroupPlan, Plan
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.errors import PlanningError
from batchwise.perf.cost import (
    batch_size_pmf,
    expected_cost_given_pmf,
    full_batch_cost_per_request,
    pmf_mean,
)
from batchwise.perf.functions import Function
from batchwise.perf.kinds import KINDS
from batchwise.perf.latency import LatencyModel
from batchwise.perf.timeout import EqTimeoutFormula
from batchwise.planner.group import GroupSummary, best_row
from batchwise.planner.table import ALL_KINDS, ConfigTable, build_table

SLO_EPS_S = 1e-9
"""Tolerance (s) when checking timeout + latency against an SLO."""


@dataclass(frozen=True)
class PlannerOptions:
    """Knobs shared by planners."""

    eq_timeout: EqTimeoutFormula = "eq5"  # equivalent-timeout formula (see perf.timeout)
    objective: str = "expected"  # or "full-batch", the paper's (see planner.objective)


DEFAULT_OPTIONS = PlannerOptions()


@dataclass
class Part:
    """One group being planned: app shares and the chosen table row."""

    shares: list[tuple[AppSpec, float]]  # (app, rate this group takes of it)
    row: int  # row of the ConfigTable that serves the group
    extra: dict = field(default_factory=dict)

    def summary(self, formula: EqTimeoutFormula) -> GroupSummary:
        return GroupSummary.of(
            [a.slo for a, _ in self.shares], [r for _, r in self.shares], formula
        )


class Planner(Protocol):
    """``plan(apps, profile, prices) -> Plan``; ``name`` is the CLI's ``--algorithm``."""

    name: str

    def plan(
        self,
        apps: Sequence[AppSpec],
        profile: ModelProfile,
        prices: PriceBook,
        options: PlannerOptions = ...,
    ) -> Plan: ...


def function_spec(fn: Function) -> FunctionSpec:
    return FunctionSpec(**KINDS[fn.kind].spec_fields(fn))


def group_figures(
    fn: Function, batch: int, total_rate: float, t_eq: float, lm: LatencyModel, prices: PriceBook
) -> dict[str, float]:
    """The predicted figures of a group plan (the ``GroupPlan`` fields they fill).

    One place for them, so a plan made by a planner and a hand-edited plan checked
    by :mod:`batchwise.planner.verify` are predicted the same way.
    """
    avgs = lm.avg_upto(fn, batch)
    pmf = batch_size_pmf(total_rate, t_eq, batch)
    return {
        "cost_per_request": full_batch_cost_per_request(fn, float(avgs[-1]), batch, prices),
        "expected_cost_per_request": expected_cost_given_pmf(fn, avgs, pmf, prices),
        "latency_avg": float(avgs[-1]),
        "latency_max": lm.max(fn, batch),
        "equivalent_timeout": t_eq,
        "expected_batch_size": pmf_mean(pmf),
    }


def _group_plan(
    part: Part, table: ConfigTable, lm: LatencyModel, prices: PriceBook, formula: EqTimeoutFormula
) -> tuple[GroupPlan, list[str]]:
    """Timeouts, costs and predictions of one group; also the apps predicted to violate."""
    shares = sorted(part.shares, key=lambda s: (s[0].slo, s[0].name))
    fn = table.functions[part.row]
    b = int(table.batch[part.row])
    budget_lat = float(table.lat_max[part.row])
    true_max = float(table.true_lat_max[part.row])
    g = GroupSummary.of([a.slo for a, _ in shares], [r for _, r in shares], formula)
    t_eq = max(0.0, g.t0 - budget_lat)
    timeouts = {a.name: (max(0.0, a.slo - budget_lat) if b > 1 else 0.0) for a, _ in shares}
    violators = [a.name for a, _ in shares if timeouts[a.name] + true_max > a.slo + SLO_EPS_S]
    gp = GroupPlan(
        apps=[a.name for a, _ in shares],
        rates={a.name: float(r) for a, r in shares},
        slos={a.name: a.slo for a, _ in shares},
        function=function_spec(fn),
        batch_size=b,
        timeouts=timeouts,
        **group_figures(fn, b, g.rate, t_eq, lm, prices),
    )
    return gp, violators


def plan_costs(groups: Sequence[GroupPlan]) -> tuple[float, float]:
    """Rate-weighted full-batch and expected cost per request of a plan."""
    total = sum(g.total_rate for g in groups)
    cost = sum(g.total_rate * g.cost_per_request for g in groups) / total
    expected = sum(g.total_rate * g.expected_cost_per_request for g in groups) / total
    return cost, expected


def assemble_plan(
    algorithm: str,
    parts: Sequence[Part],
    table: ConfigTable,
    profile: ModelProfile,
    prices: PriceBook,
    options: PlannerOptions,
    watch: Stopwatch,
) -> Plan:
    """Turn a partition into a :class:`Plan` (groups ordered by tightest SLO)."""
    lm = LatencyModel(profile.cpu, profile.gpu)
    groups: list[GroupPlan] = []
    violators: list[str] = []
    for part in parts:
        gp, bad = _group_plan(part, table, lm, prices, options.eq_timeout)
        groups.append(gp)
        violators.extend(bad)
    groups.sort(key=lambda g: (min(g.slos.values()), g.apps[0]))
    cost, expected = plan_costs(groups)
    return Plan(
        algorithm=algorithm,
        model=profile.name,
        prices=prices.name,
        currency=prices.currency,
        cost_per_request=cost,
        expected_cost_per_request=expected,
        planning_time_s=watch.elapsed_s(),
        slo_violations_predicted=sorted(set(violators)),
        groups=groups,
    )


def check_apps(apps: Sequence[AppSpec]) -> None:
    if not apps:
        raise PlanningError("no apps to plan")
    names = [a.name for a in apps]
    if len(set(names)) != len(names):
        raise PlanningError("app names must be unique")


def provision_or_fail(table: ConfigTable, shares: list[tuple[AppSpec, float]], formula) -> int:
    """Exact best row for a group; a clear error naming the apps when nothing fits."""
    row = best_row(
        table, GroupSummary.of([a.slo for a, _ in shares], [r for _, r in shares], formula)
    )
    if row is None:
        tight = min(shares, key=lambda s: s[0].slo)[0]
        fastest = float(table.lat_max.min()) if len(table) else float("inf")
        raise PlanningError(
            f"app {tight.name!r}: SLO {tight.slo:g} s cannot be met by any function "
            f"(fastest possible max latency {fastest:.3f} s)"
        )
    return row


def raise_if_hopeless(apps: Sequence[AppSpec], table: ConfigTable) -> None:
    """An app whose SLO is below every config's max latency can never be served."""
    fastest = float(table.lat_max.min())
    bad = [a for a in apps if a.slo < fastest]
    if bad:
        names = ", ".join(f"{a.name} (slo {a.slo:g} s)" for a in bad[:5])
        raise PlanningError(
            f"SLO too tight for any function: {names}; the fastest max latency is {fastest:.3f} s"
        )


def _empty_table_reason(profile: ModelProfile, prices: PriceBook, kinds: Sequence[str]) -> str:
    """Why no configuration exists: no profile of the kinds asked for, or none fits."""
    have = [KINDS[k] for k in kinds if KINDS[k].profile_part(profile) is not None]
    if not have:
        return f"model {profile.name!r} has no {'/'.join(kinds)} profile"
    return (
        f"model {profile.name!r}: no function that price book {prices.name!r} sells can "
        f"hold it ({'; '.join(k.empty_reason(prices) for k in have)})"
    )


class TablePlanner(ABC):
    """Template for planners that choose a partition over the configuration table.

    ``plan`` validates the apps, builds (or reuses) the table, asks ``partition``
    for the groups and assembles the plan, timing the whole; subclasses only decide.
    """

    name: str = ""
    kinds: tuple[str, ...] = ALL_KINDS  # function kinds this planner may use
    deterministic: bool = False  # budget with L_avg instead of L_max (BATCH)
    max_apps: int | None = None  # refuse more apps than this (search cost grows too fast)

    def plan(
        self,
        apps: Sequence[AppSpec],
        profile: ModelProfile,
        prices: PriceBook,
        options: PlannerOptions = DEFAULT_OPTIONS,
    ) -> Plan:
        check_apps(apps)
        if self.max_apps is not None and len(apps) > self.max_apps:
            raise PlanningError(
                f"{self.name!r} plans at most {self.max_apps} apps (its search grows "
                f"too fast), got {len(apps)}; use 'dp'"
            )
        watch = Stopwatch()
        table = build_table(profile, prices, self.kinds, deterministic=self.deterministic)
        if len(table) == 0:
            raise PlanningError(_empty_table_reason(profile, prices, self.kinds))
        parts = self.partition(list(apps), table, profile, prices, options)
        if options.objective == "expected":
            from batchwise.planner.objective import expected_row

            lm = LatencyModel(profile.cpu, profile.gpu)
            for part in parts:
                row = expected_row(table, part.summary(options.eq_timeout), lm, prices,
                                   incumbent=part.row)  # fmt: skip
                if row is not None:
                    part.row = row
        return assemble_plan(self.name, parts, table, profile, prices, options, watch)

    @abstractmethod
    def partition(
        self,
        apps: list[AppSpec],
        table: ConfigTable,
        profile: ModelProfile,
        prices: PriceBook,
        options: PlannerOptions,
    ) -> list[Part]:
        """Return the groups (app shares and table rows) of the cheapest plan found."""
