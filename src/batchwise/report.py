"""Human-readable tables (rich) for plans, comparisons and simulations.

Scripts should use ``--json``; these tables are for people. Every cell and title
goes in as :class:`rich.text.Text`, never as a markup string: app and model names
come from user files, and ``[bold]x[/bold]`` must print as itself. Number columns
never wrap or get cut (``no_wrap``); the text columns give way at 80 columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchwise.config.plan import GroupPlan, Plan
from batchwise.perf.functions import function_from_spec
from batchwise.planner.compare import CompareRow


def _fn(g: GroupPlan) -> str:
    return function_from_spec(g.function).describe()


def _fmt(x: float | None, spec: str = ".3e") -> str:
    return "-" if x is None else format(x, spec)


def _table(
    title: str, columns: Sequence[str], left: Sequence[str], keep: Sequence[str] = ("function",)
) -> Table:
    """A table whose title is plain text and whose number (and ``keep``) columns never wrap."""
    t = Table(title=Text(title))
    for col in columns:
        if col in keep:
            t.add_column(col, justify="left", no_wrap=True)
        elif col in left:
            t.add_column(col, justify="left", overflow="fold")
        else:
            t.add_column(col, justify="right", no_wrap=True)
    return t


def _add(t: Table, *cells: str) -> None:
    t.add_row(*(Text(c) for c in cells))


def plan_table(plan: Plan) -> Table:
    t = _table(
        f"{plan.algorithm} plan for {plan.model}: "
        f"{plan.cost_per_request:.4e} {plan.currency}/request "
        f"(expected {plan.expected_cost_per_request:.4e}), planned in "
        f"{plan.planning_time_s * 1000:.1f} ms",
        ("apps (timeout s)", "function", "batch", "req/s", "L_max s", "cost/req", "expected"),
        ("apps (timeout s)",),
    )
    for g in plan.groups:
        _add(
            t,
            ", ".join(f"{a} ({g.timeouts[a]:.3f})" for a in g.apps),
            _fn(g),
            str(g.batch_size),
            f"{g.total_rate:.4g}",
            f"{g.latency_max:.3f}",
            f"{g.cost_per_request:.2e}",
            f"{g.expected_cost_per_request:.2e}",
        )
    if plan.slo_violations_predicted:
        t.caption = Text(
            "SLO at risk (timeout + L_max > SLO): " + ", ".join(plan.slo_violations_predicted)
        )
    return t


def compare_table(rows: Sequence[CompareRow], currency: str) -> Table:
    t = _table(
        f"Planner comparison (cost per request in {currency}; normalised to batch)",
        ("algorithm", "cost/req", "normalised", "exp. cost", "groups", "GPU", "ms", "at risk"),
        ("algorithm",),
    )
    for r in rows:
        if r.cost_per_request is None:
            _add(t, r.algorithm, "-", "-", "-", "-", "-", "-", "-")
            continue
        _add(
            t,
            r.algorithm,
            _fmt(r.cost_per_request),
            _fmt(r.normalized_cost, ".3f"),
            _fmt(r.expected_cost_per_request),
            str(r.groups),
            str(r.gpu_groups),
            f"{r.planning_time_s * 1000:.1f}",
            str(r.slo_violations_predicted),
        )
    failed = [f"{r.algorithm}: {r.error or 'failed'}" for r in rows if r.cost_per_request is None]
    if failed:
        t.caption = Text("no plan from " + "; ".join(failed))
    return t


def print_table(table: Table, console: Console | None = None) -> None:
    (console or Console()).print(table)


def sim_tables(res: Any) -> list[Table]:
    """Per-app and per-group tables of a :class:`~batchwise.sim.serving.SimResult`."""
    refused = getattr(res, "rejected", 0)
    apps = _table(
        f"Simulation of the {res.algorithm} plan: {res.requests} requests in "
        f"{res.duration_s:.0f} s, {res.cost_per_request:.4e} {res.currency}/request "
        f"(predicted {res.predicted_cost_per_request:.4e}), "
        + (f"{refused} refused by admission, " if refused else "")
        + f"SLO violations {res.slo_violation_rate * 100:.2f}%"
        + (" of admitted" if refused else ""),
        ("app", "requests", "refused", "SLO (s)", "violations", "p50 (s)", "p99 (s)",
         "mean batch"),
        ("app",),
    )  # fmt: skip
    for name, st in res.apps.items():
        _add(
            apps,
            name,
            str(st.requests),
            f"{(1 - st.admitted_fraction) * 100:.1f}%",
            f"{st.slo_s:.2f}",
            f"{st.slo_violation_rate * 100:.2f}%",
            f"{st.p50_latency_s:.3f}",
            f"{st.p99_latency_s:.3f}",
            f"{st.mean_batch_size:.2f}",
        )
    groups = _table(
        "Groups",
        ("apps", "function", "batch", "batches", "mean batch", "cost/req", "predicted"),
        ("apps", "function"),
    )
    for g in res.groups:
        _add(
            groups,
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
    t = _table(
        f"Re-planning every {res.window_s:.0f} s: {res.requests} requests, "
        f"{res.cost_per_request:.4e} {currency}/request, "
        f"SLO violations {res.slo_violation_rate * 100:.2f}%",
        ("window", "start (s)", "requests", "cost/req", "violations", "functions"),
        ("functions",),
    )
    for w in res.windows[:30]:
        _add(
            t,
            str(w.index),
            f"{w.start_s:.0f}",
            str(w.requests),
            f"{w.cost_per_request:.3e}",
            f"{w.slo_violation_rate * 100:.2f}%",
            ", ".join(w.functions),
        )
    if len(res.windows) > 30:
        t.caption = Text(f"… {len(res.windows) - 30} more windows (see --json)")
    return t
