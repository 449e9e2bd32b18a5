"""Check a plan file against its profile and price book, and re-derive its predictions.

Why: plans are JSON that users edit by hand (or that other tools write). A plan
whose batch exceeds what the model was profiled for, whose function the platform
does not sell, or whose memory cannot hold the batch would otherwise simulate to
numbers nobody can trust — or crash deep inside the simulator. Every such mistake
becomes a :class:`ConfigError` naming the plan file, line and field. The figures a
plan *predicts* (latencies, costs, T_eq, expected batch) are derived state, so they
are recomputed from the profile, the price book and the plan's own timeouts — the
same :func:`~batchwise.planner.base.group_figures` a planner uses — and an edited
timeout shows up in the predicted cost and in ``slo_violations_predicted``.
"""

from __future__ import annotations

import math

from batchwise.config.loader import LineMap
from batchwise.config.plan import GroupPlan, Plan
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.errors import ConfigError
from batchwise.perf.functions import Function, function_from_spec
from batchwise.perf.kinds import KINDS, SIZE_EPS, KindError
from batchwise.perf.latency import LatencyModel
from batchwise.perf.timeout import equivalent_timeout
from batchwise.planner.base import SLO_EPS_S, group_figures, plan_costs


class _Where:
    """Builds located errors for one plan file."""

    def __init__(self, source: str, lines: LineMap | None) -> None:
        self.source = source
        self.lines = lines or LineMap()

    def error(self, path: tuple[str | int, ...], message: str) -> ConfigError:
        line = None
        probe = path
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe[:-1]
        field = ".".join(str(p) for p in path) or None
        return ConfigError(message, file=self.source, line=line, field=field)


def _check_function(
    g: GroupPlan, i: int, profile: ModelProfile, prices: PriceBook, at: _Where
) -> Function:
    """The function the platform would run for this group; errors where the plan differs."""
    try:
        fn = KINDS[g.function.kind].check(g.function, g.batch_size, profile, prices)
    except KindError as exc:
        raise at.error(("groups", i, *exc.field), str(exc)) from None
    given = function_from_spec(g.function)
    for name in ("vcpu", "memory_gb"):
        want, have = getattr(fn, name), getattr(given, name)
        if not math.isclose(want, have, rel_tol=0.0, abs_tol=SIZE_EPS):
            raise at.error(
                ("groups", i, "function", name),
                f"{have:g} does not match the function's size under price book "
                f"{prices.name!r} ({want:g} for this batch and size)",
            )
    return fn


def verify_plan(
    plan: Plan,
    profile: ModelProfile,
    prices: PriceBook,
    source: str = "plan",
    lines: LineMap | None = None,
) -> Plan:
    """A copy of ``plan`` with its predictions re-derived; ConfigError where it is invalid."""
    at = _Where(source, lines)
    if plan.currency != prices.currency:
        raise at.error(
            ("currency",),
            f"{plan.currency!r} but price book {prices.name!r} is in {prices.currency!r}",
        )
    lm = LatencyModel(profile.cpu, profile.gpu)
    groups: list[GroupPlan] = []
    violators: set[str] = set()
    for i, g in enumerate(plan.groups):
        fn = _check_function(g, i, profile, prices, at)
        timeouts = g.timeouts
        t_eq, rate = equivalent_timeout([timeouts[a] for a in g.apps], [g.rates[a] for a in g.apps])
        figures = group_figures(fn, g.batch_size, rate, t_eq, lm, prices)
        violators.update(
            a for a in g.apps if timeouts[a] + figures["latency_max"] > g.slos[a] + SLO_EPS_S
        )
        groups.append(g.model_copy(update=figures))
    cost, expected = plan_costs(groups)
    return plan.model_copy(
        update={
            "groups": groups,
            "cost_per_request": cost,
            "expected_cost_per_request": expected,
            "slo_violations_predicted": sorted(violators),
        }
    )
