"""``batchwise gpu simulate``: replay a GPU-cluster workload through placement schedulers.

Why: Dilu's claim is fewer GPUs for the same instances. This replays the authors'
workload format (:mod:`batchwise.gpu.workload`) through Exclusive, INFless-l,
INFless-r, Dilu and ours (:mod:`batchwise.gpu.placement`, :mod:`batchwise.gpu.repack`)
on :mod:`batchwise.sim.gpu_cluster`, which checks every invariant at every event.

Every option is checked, and the whole workload parsed, before anything runs; each
mistake is one ConfigError line (exit 2 through the CLI's boundary). Results go to
stdout: a table (one row per scheduler) or one JSON object under ``--json``; an
invariant violation is a bug and exits 1 with the CLI's internal-error line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from batchwise.gpu.placement import SchedulerName
from batchwise.gpu.workload import (
    DEFAULT_GPU_MEMORY_GB,
    DEFAULT_GPUS_PER_NODE,
    DEFAULT_LIMIT_CAPACITY,
    SM_CAPACITY,
)
from batchwise.options import ALL, emit_report, in_range, one_or_all
from batchwise.outputs import check_output_file

if TYPE_CHECKING:  # the simulator (numpy, the event heap) loads only when the command runs
    from batchwise.gpu.workload import Workload
    from batchwise.sim.gpu_cluster import ClusterSimResult

MAX_GPUS_PER_NODE = 64
"""Largest ``--gpus-per-node``."""
MAX_GPU_MEMORY_GB = 4096.0
"""Largest ``--gpu-memory-gb``."""
MAX_LIMIT_CAPACITY = 8.0
"""Largest ``--limit-capacity`` (Σ SM limits per GPU; Dilu uses 1.5)."""
MAX_MOVE_BUDGET = 1000
"""Largest ``--move-budget``."""


def simulate_command(
    workload: Annotated[
        Path, typer.Argument(help="Workload file: one dict literal per line (instances-*.txt).")
    ],
    scheduler: Annotated[
        str,
        typer.Option(
            "--scheduler",
            "-s",
            help="exclusive, infless-l, infless-r, dilu, repack (ours), or all.",
        ),
    ] = ALL,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write active GPUs over time (PNG) here.")
    ] = None,
    gpus_per_node: Annotated[
        int, typer.Option("--gpus-per-node", help="GPUs per node; a training gang fits one node.")
    ] = DEFAULT_GPUS_PER_NODE,
    gpu_memory_gb: Annotated[
        float, typer.Option("--gpu-memory-gb", help="Memory of one GPU (GB).")
    ] = DEFAULT_GPU_MEMORY_GB,
    limit_capacity: Annotated[
        float,
        typer.Option("--limit-capacity", help="Σ SM limits one GPU may carry (1 = no overcommit)."),
    ] = DEFAULT_LIMIT_CAPACITY,
    move_budget: Annotated[
        int | None,
        typer.Option("--move-budget", help="repack: most instances moved per event (default 8)."),
    ] = None,
) -> None:
    """Replay WORKLOAD through GPU placement schedulers: peak active GPUs, fragmentation at
    the peak, moves; every invariant is checked at every event."""
    from batchwise.gpu.placement import Capacity
    from batchwise.gpu.workload import Limits, load_workload
    from batchwise.sim.gpu_cluster import exclusive_peak

    names = one_or_all("--scheduler", scheduler, SchedulerName, "scheduler")
    in_range("--gpus-per-node", gpus_per_node, 1, MAX_GPUS_PER_NODE)
    in_range("--gpu-memory-gb", gpu_memory_gb, 1.0, MAX_GPU_MEMORY_GB)
    in_range("--limit-capacity", limit_capacity, SM_CAPACITY, MAX_LIMIT_CAPACITY)
    if move_budget is not None:
        in_range("--move-budget", move_budget, 0, MAX_MOVE_BUDGET)
    if plot is not None:
        check_output_file(plot, "--plot", ".png")
    limits = Limits(gpu_memory_gb=gpu_memory_gb, limit_capacity=limit_capacity,
                    gpus_per_node=gpus_per_node)  # fmt: skip
    wl = load_workload(workload, limits)
    capacity = Capacity(limit=limit_capacity, memory_gb=gpu_memory_gb, gpus_per_node=gpus_per_node)
    results = run_schedulers(wl, names, capacity, move_budget)
    report = _report(wl, capacity_dict(capacity), results, exclusive_peak(wl))
    if plot is not None:
        plot_active_gpus(results, plot, Path(workload).name)
        report["plot"] = str(plot)
    emit_report(report, as_json, print_report)


def run_schedulers(
    wl: Workload, names: list[SchedulerName], capacity: Any, move_budget: int | None
) -> dict[str, ClusterSimResult]:
    """One replay per scheduler; ``move_budget`` (when given) goes to ours only."""
    from batchwise.gpu.placement import make_policy
    from batchwise.sim.gpu_cluster import simulate

    results: dict[str, ClusterSimResult] = {}
    for name in names:
        ours = name is SchedulerName.REPACK and move_budget is not None
        opts = {"move_budget": move_budget} if ours else {}
        results[name.value] = simulate(wl, make_policy(name, **opts), capacity)
    return results


def capacity_dict(c: Any) -> dict[str, Any]:
    return {"sm": c.sm, "limit": c.limit, "memory_gb": c.memory_gb,
            "gpus_per_node": c.gpus_per_node}  # fmt: skip


def _report(
    wl: Workload, capacity: dict[str, Any], results: Mapping[str, ClusterSimResult], ex: int
) -> dict[str, Any]:
    """The ``--json`` object (fields in the README's table)."""
    return {
        "workload": wl.source,
        "instances": wl.n_instances,
        "events": len(wl.events),
        "exclusive_peak": ex,
        "capacity": capacity,
        "schedulers": {name: r.to_dict(exclusive_peak=ex) for name, r in results.items()},
    }


def print_report(report: dict[str, Any], out: Console) -> None:
    """One row per scheduler; the ratio is to Exclusive's peak (Σ gpu_num of live instances)."""
    out.print(f"{report['workload']}: {report['instances']} instances, {report['events']} "
              f"events; Exclusive peak {report['exclusive_peak']} GPUs",
              markup=False, highlight=False)  # fmt: skip
    table = Table(show_edge=False)
    for col in ("scheduler", "peak GPUs", "÷ exclusive", "SM frag", "mem frag", "moves",
                "violations"):  # fmt: skip
        table.add_column(col, justify="left" if col == "scheduler" else "right")
    for name, r in report["schedulers"].items():
        table.add_row(name, str(r["peak_gpus"]), f"{r['ratio_to_exclusive']:.3f}",
                      f"{r['sm_fragmentation']:.3f}", f"{r['memory_fragmentation']:.3f}",
                      str(r["moves"]), str(r["invariant_violations"]))  # fmt: skip
    out.print(table)
    if "plot" in report:
        out.print(f"plot written to {report['plot']}", markup=False, highlight=False)


def plot_active_gpus(results: Mapping[str, ClusterSimResult], path: Path, title: str) -> Path:
    """Active GPUs over time, one line per scheduler, each peak marked (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from batchwise.outputs import save_figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name, r in results.items():
        t0 = r.times_s[0] if r.times_s else 0.0
        minutes = [(t - t0) / 60.0 for t in r.times_s]
        label = f"{name} (peak {r.peak_gpus})"
        (line,) = ax.step(minutes, r.active_gpus, where="post", label=label)
        ax.plot([(r.peak_time_s - t0) / 60.0], [r.peak_gpus], "o", color=line.get_color(), ms=4)
    ax.set_xlabel("time since the first event (minutes)")
    ax.set_ylabel("active GPUs")
    ax.set_title(f"{title}: active GPUs over time (dot: first event at the peak)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    FigureCanvasAgg(fig)
    return save_figure(fig, path)
