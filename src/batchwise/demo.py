"""The end-to-end demo behind ``make demo``: plan, compare, simulate, re-plan, plot, serve.

Workload: the HarmonyBatch paper's Table I (VGG-19; SLO/rate 0.5 s/5, 0.8 s/10,
1.0 s/20 req/s). Arrivals: the shipped per-minute traces app1..app3 (from the
Azure Functions trace, as the paper uses) replayed as they are — their real
rates (≈7.5, 15.6, 28.7 req/s) differ from the nominal ones, which is exactly
when re-planning every minute pays off. Then the live path: four apps on the real
MiniLM encoder served over HTTP and loaded (:mod:`batchwise.serving.demo_live`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from batchwise.config.apps import AppSpec
from batchwise.config.prices import load_prices
from batchwise.config.profiles import builtin_profiles
from batchwise.outputs import check_output_dir, write_text
from batchwise.planner import DEFAULT_ALGORITHM
from batchwise.planner.compare import compare, rows_to_dicts
from batchwise.plots import plot_compare
from batchwise.sim.runs import run_simulation

DEMO_APPS = (
    AppSpec(name="app1", slo=0.5, rate=5),
    AppSpec(name="app2", slo=0.8, rate=10),
    AppSpec(name="app3", slo=1.0, rate=20),
)
DEMO_TRACES = ["app1=minute:app1", "app2=minute:app2", "app3=minute:app3"]
SIMULATED = ("dp", "harmony", "mbs", "batch")
"""Planners whose plans the demo replays (the default first)."""


def run_demo(out: Path, duration_s: float, console: Any | None, live_s: float = 0.0,
             live_scale: float = 1.0) -> dict[str, Any]:  # fmt: skip
    """Run the demo; print tables to ``console`` (if given); return the JSON report."""
    from batchwise.report import compare_table, plan_table, print_table

    check_output_dir(out, "--out")
    profile = builtin_profiles()["VGG19"]
    prices = load_prices(None)
    apps = list(DEMO_APPS)
    say = console.print if console is not None else (lambda *a, **k: None)

    say("[bold]1. Plan the VGG-19 example with every planner[/]")
    rows, plans = compare(apps, profile, prices)
    compare_png = plot_compare(
        rows, out / "compare.png", f"VGG-19, Table I apps: every planner ({prices.name})"
    )
    if console is not None:
        print_table(compare_table(rows, prices.currency), console)
        print_table(plan_table(plans[DEFAULT_ALGORITHM.value]), console)

    say(f"[bold]2. Simulate plans on the shipped traces ({duration_s:.0f} s)[/]")
    sims: dict[str, Any] = {}
    pngs = [str(compare_png)]
    for i, name in enumerate(SIMULATED):
        default = name == DEFAULT_ALGORITHM.value
        rep = run_simulation(
            plans[name], profile, prices, apps, DEMO_TRACES, duration_s, seed=0,
            replan_algorithm=name if default else None,
            plot=out / f"latency-cdf-{name}.png" if i == 0 else None,
        )  # fmt: skip
        pngs.extend(rep.plots)
        sims[name] = rep
        say(
            f"  {name:8s} static plan: {rep.static.cost_per_request:.4e} {prices.currency}/req, "
            f"SLO violations {rep.static.slo_violation_rate * 100:.2f}%"
        )
        if rep.adaptive is not None:
            say(
                f"  {name:8s} re-planned every 60 s: {rep.adaptive.cost_per_request:.4e} "
                f"{prices.currency}/req, "
                f"SLO violations {rep.adaptive.slo_violation_rate * 100:.2f}%"
            )
    if console is not None:
        print_table(_summary_table(sims, prices.currency), console)
        for p in pngs:
            console.print(f"plot written to {p}")
    live = None
    if live_s > 0:
        from batchwise.serving.demo_live import run_live

        say(f"[bold]3. Serve four apps on MiniLM live over HTTP, load them ({live_s:.0f} s)[/]")
        live = run_live(out, live_s, live_scale, lambda m: say(escape(m)))
        pngs.append(live["plot"])
        say(f"  {live['requests']} requests: SLO attainment {live['slo_attainment']:.2%} of "
            f"admitted, {live['admitted_fraction']:.2%} admitted, p99 {live['p99_s']:.3f} s; "
            f"cost/request {live['cost_per_request_measured']:.3g} measured vs "
            f"{live['cost_per_request_predicted']:.3g} predicted {live['currency']}; "
            f"{live['cpu_s_per_1000']:.1f} CPU-s per 1000 requests")  # fmt: skip
        for app, a in live["apps"].items():
            say(f"    {escape(app):8s} SLO {a['slo_s']:.1f} s: {a['slo_attainment']:.2%} "
                f"within, p50 {a['p50_s']:.3f} s, p99 {a['p99_s']:.3f} s, "
                f"{a['rejected']} refused")  # fmt: skip
    report = {
        "live": live,
        "model": profile.name,
        "prices": prices.name,
        "currency": prices.currency,
        "compare": rows_to_dicts(rows),
        "simulations": {k: v.to_dict() for k, v in sims.items()},
        "plots": pngs,
    }
    import json

    write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def _summary_table(sims: dict[str, Any], currency: str) -> Any:
    from rich.table import Table

    t = Table(title=f"Demo summary: simulated on the shipped traces ({currency}/request)")
    for col in ("planner", "mode", "cost/request", "SLO violations", "requests"):
        t.add_column(col, justify="left" if col in ("planner", "mode") else "right")
    for name, rep in sims.items():
        s = rep.static
        t.add_row(
            name,
            "static plan",
            f"{s.cost_per_request:.4e}",
            f"{s.slo_violation_rate * 100:.2f}%",
            str(s.requests),
        )
        if rep.adaptive is not None:
            a = rep.adaptive
            t.add_row(
                name,
                "re-plan / 60 s",
                f"{a.cost_per_request:.4e}",
                f"{a.slo_violation_rate * 100:.2f}%",
                str(a.requests),
            )
    return t
