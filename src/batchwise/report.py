"""Human-readable tables (rich) for plans, comparisons and simulations.

Scripts should use ``--json``; these tables are for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from batchwise.config.plan import GroupPlan, Plan
from batchwise.planner.compare import CompareRow


def _fn(g: GroupPlan) -> str:
    f = g.function
    return f"CPU {f.vcpu:.2f} vCPU" if f.kind == "cpu" else f"GPU {f.gpu_memory_gb} GB"


def _fmt(x: float | None, spec: str = ".3e") -> str:
    return "-" if x is None else format(x, spec)


def plan_table(plan: Plan) -> Table:
    t = Table(
        title=(
            f"{plan.algorithm} plan for {plan.model}: "
            f"{plan.cost_per_request:.4e} {plan.currency}/request "
            f"(expected {plan.expected_cost_per_request:.4e}), planned in "
            f"{plan.planning_time_s * 1000:.1f} ms"
        )
    )
    for col in (
        "apps",
        "function",
        "batch",
        "timeouts (s)",
        "rate (req/s)",
        "L_max (s)",
        "cost/request",
        "expected cost/req",
    ):
        t.add_column(
            col, justify="left" if col in ("apps", "function", "timeouts (s)") else "right"
        )
    for g in plan.groups:
        timeouts = ", ".join(f"{a}={g.timeouts[a]:.3f}" for a in g.apps)
        t.add_row(
            ", ".join(g.apps),
            _fn(g),
            str(g.batch_size),
            timeouts,
            f"{g.total_rate:.2f}",
            f"{g.latency_max:.3f}",
            f"{g.cost_per_request:.3e}",
            f"{g.expected_cost_per_request:.3e}",
        )
    if plan.slo_violations_predicted:
        t.caption = "SLO at risk (timeout + L_max > SLO): " + ", ".join(
            plan.slo_violations_predicted
        )
    return t


def compare_table(rows: Sequence[CompareRow], currency: str) -> Table:
    t = Table(title=f"Planner comparison (cost per request in {currency}; normalised to batch)")
    for col in (
        "algorithm",
        "cost/request",
        "normalised",
        "expected cost/req",
        "groups",
        "GPU groups",
        "planning (ms)",
        "SLO at risk",
    ):
        t.add_column(col, justify="left" if col == "algorithm" else "right")
    for r in rows:
        if r.cost_per_request is None:
            t.add_row(r.algorithm, "-", "-", "-", "-", "-", "-", r.error or "failed")
            continue
        t.add_row(
            r.algorithm,
            _fmt(r.cost_per_request),
            _fmt(r.normalized_cost, ".3f"),
            _fmt(r.expected_cost_per_request),
            str(r.groups),
            str(r.gpu_groups),
            f"{r.planning_time_s * 1000:.1f}",
            str(r.slo_violations_predicted),
        )
    return t


def print_table(table: Table, console: Console | None = None) -> None:
    (console or Console()).print(table)


def sim_tables(res: Any) -> list[Table]:
    """Per-app and per-group tables of a :class:`~batchwise.sim.serving.SimResult`."""
    apps = Table(
        title=(
            f"Simulation of the {res.algorithm} plan: {res.requests} requests in "
            f"{res.duration_s:.0f} s, {res.cost_per_request:.4e} {res.currency}/request "
            f"(predicted {res.predicted_cost_per_request:.4e}), "
            f"SLO violations {res.slo_violation_rate * 100:.2f}%"
        )
    )
    for col in ("app", "requests", "SLO (s)", "violations", "p50 (s)", "p99 (s)", "mean batch"):
        apps.add_column(col, justify="left" if col == "app" else "right")
    for name, s in res.apps.items():
        apps.add_row(
            name,
            str(s.requests),
            f"{s.slo_s:.2f}",
            f"{s.slo_violation_rate * 100:.2f}%",
            f"{s.p50_latency_s:.3f}",
            f"{s.p99_latency_s:.3f}",
            f"{s.mean_batch_size:.2f}",
        )
    groups = Table(title="Groups")
    for col in ("apps", "function", "batch", "batches", "mean batch", "cost/request", "predicted"):
        groups.add_column(col, justify="left" if col in ("apps", "function") else "right")
    for g in res.groups:
        groups.add_row(
            ", ".join(g.apps),
            str(g.function),
            str(g.batch_size),
            str(g.batches),
            f"{g.mean_batch_size:.2f}",
            f"{g.cost_per_request:.3e}",
            f"{g.predicted_cost_per_request:.3e}",
        )
    return [apps, groups]


def adaptive_table(res: Any, currency: str) -> Table:
    """Summary of a re-planning run, one row per window (at most 30 shown)."""
    t = Table(
        title=(
            f"Re-planning every {res.window_s:.0f} s: {res.requests} requests, "
            f"{res.cost_per_request:.4e} {currency}/request, "
            f"SLO violations {res.slo_violation_rate * 100:.2f}%"
        )
    )
    for col in ("window", "start (s)", "requests", "cost/request", "violations", "functions"):
        t.add_column(col, justify="left" if col == "functions" else "right")
    for w in res.windows[:30]:
        t.add_row(
            str(w.index),
            f"{w.start_s:.0f}",
            str(w.requests),
            f"{w.cost_per_request:.3e}",
            f"{w.slo_violation_rate * 100:.2f}%",
            ", ".join(w.functions),
        )
    if len(res.windows) > 30:
        t.caption = f"… {len(res.windows) - 30} more windows (see --json)"
    return t
