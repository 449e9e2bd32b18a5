"""One simulation run as the CLI and the demo need it: trace → static plan (→ re-planning)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchwise.config.apps import AppSpec
from batchwise.config.plan import Plan
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.planner import plan as make_plan
from batchwise.sim.instances import PoolSpec
from batchwise.sim.replan import AdaptiveResult, simulate_adaptive
from batchwise.sim.serving import SimResult, plan_slos, simulate
from batchwise.traces.spec import build_trace


@dataclass
class SimulationReport:
    """Static-plan result, optional re-planning result, and the PNGs written."""

    static: SimResult
    adaptive: AdaptiveResult | None
    trace_specs: list[str]
    plots: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace": self.trace_specs,
            "static": self.static.to_dict(),
            "replan": self.adaptive.to_dict() if self.adaptive else None,
            "plots": self.plots,
        }

    def print(self, console: Any) -> None:
        from batchwise.report import adaptive_table, print_table, sim_tables

        for t in sim_tables(self.static):
            print_table(t, console)
        if self.adaptive is not None:
            print_table(adaptive_table(self.adaptive, self.static.currency), console)
        for p in self.plots:
            console.print(f"plot written to {p}")


def run_simulation(
    plan: Plan,
    profile: ModelProfile,
    prices: PriceBook,
    apps: list[AppSpec],
    trace_specs: list[str],
    duration_s: float | None,
    seed: int,
    replan_algorithm: str | None = None,
    window_s: float = 60.0,
    plot: Path | None = None,
    progress: Any | None = None,
    pool: PoolSpec | None = None,
) -> SimulationReport:
    """Simulate ``plan`` on the trace; with ``replan_algorithm`` also the adaptive run.

    ``progress``: a rich console on which a re-planning run shows a progress bar.
    ``pool``: finite instances per group for the static plan (None: serverless).
    """
    rates = {a.name: a.rate for a in apps}
    trace = build_trace(trace_specs, rates, seed, duration_s)
    static = simulate(plan, trace, profile, prices, seed=seed, pool=pool)
    adaptive = None
    if replan_algorithm is not None:

        def planner(current: list[AppSpec]) -> Plan:
            return make_plan(current, profile, prices, replan_algorithm)

        with _window_progress(progress) as on_window:
            adaptive = simulate_adaptive(
                trace, apps, planner, profile, prices, window_s, seed, on_window
            )
    plots: list[str] = []
    if plot is not None:
        from batchwise.sim.plots import plot_adaptive, plot_latency_cdf

        what = f"{plan.algorithm} plan for {plan.model}; trace: {' '.join(trace_specs)}"
        plots.append(str(plot_latency_cdf(static, plan_slos(plan), plot, what)))
        if adaptive is not None:
            path = plot.with_name(plot.stem + "-replan" + plot.suffix)
            what = f"{replan_algorithm} re-planning {plan.model}; trace: {' '.join(trace_specs)}"
            plots.append(str(plot_adaptive(adaptive, path, what, prices.currency)))
    return SimulationReport(static, adaptive, list(trace_specs), plots)


@contextmanager
def _window_progress(console: Any | None) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar over re-planning windows on ``console`` (None: no display)."""
    if console is None or not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "re-planning windows", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("windows", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
