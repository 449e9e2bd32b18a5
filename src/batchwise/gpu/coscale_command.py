"""``batchwise gpu coscale``: serve an RPS trace on GPUs shared with a co-runner, five ways.

Why: Dilu's claim for co-scaling is that an inference function keeps its QoS with
fewer GPUs *and* leaves room for low-priority work, because a fast vertical
controller lends it its limit only while it is busy and a lazy horizontal scaler
adds instances only for load that persists. This command sizes the function by the
pruning search on its grid (:func:`batchwise.gpu.search.hybrid_search` at ``--qos``),
gives it a limit (default twice the request), fills the rest of each GPU's guarantee
with a co-runner, and replays the trace through :mod:`batchwise.sim.gpu_serving` in
every :class:`~batchwise.sim.gpu_serving.Mode`.

Every option and both files are checked before anything runs; each mistake is one
ConfigError line (exit 2 through the CLI's boundary). Results go to stdout: a table,
or one JSON object under ``--json`` (fields in the README).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from batchwise.errors import ConfigError
from batchwise.gpu.workload import DEFAULT_LIMIT_CAPACITY
from batchwise.options import ALL, emit_report, in_range, one_or_all
from batchwise.outputs import check_output_file

if TYPE_CHECKING:  # numpy, the grids and the simulator load only when the command runs
    import numpy as np

    from batchwise.gpu.latency_grid import LatencyGrid
    from batchwise.sim.gpu_serving import CoscaleResult, CoscaleSetup

DEFAULT_PEAK_LOAD = 1.5
"""The trace is scaled so that its busiest second is this many times what one instance
carries at its request (the shipped traces peak at 4–14 requests per second)."""
DEFAULT_SLO_FACTOR = 2.0
"""Request SLO = this × the profiling QoS: the QoS bounds one batch, and a request may
wait for the batch in front of it."""
DEFAULT_LIMIT_FACTOR = 2.0
"""Limit = this × request, at most the whole GPU (Dilu's BERT 0.1/0.2, RoBERTa 0.3/0.6)."""
MAX_DURATION_S = 86_400
MAX_PEAK_LOAD = 100.0
MAX_INTERFERENCE = 10.0
MAX_COLD_START_S = 3600.0
MAX_INSTANCES = 256
MAX_REQUESTS = 5_000_000
"""Most requests one mode may simulate (the trace × the scale); more is refused up front."""


def coscale_command(
    trace: Annotated[Path, typer.Argument(help="Requests per second, one value per line.")],
    grid: Annotated[Path, typer.Option("--grid", help="The inference function's latency grid.")],
    qos: Annotated[
        float, typer.Option("--qos", help="Latency target of one batch (s), for the search.")
    ],
    corunner_grid: Annotated[
        Path | None,
        typer.Option("--corunner-grid", help="The co-runner's grid (its throughput by share)."),
    ] = None,
    corunner_batch: Annotated[
        int, typer.Option("--corunner-batch", help="The co-runner's batch (a grid batch size).")
    ] = 32,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            "-m",
            help="dilu, horizontal-only, static-request, static-limit, exclusive, or all.",
        ),
    ] = ALL,
    slo: Annotated[
        float | None, typer.Option("--slo", help="Request SLO (s); default 2 × --qos.")
    ] = None,
    limit: Annotated[
        float | None,
        typer.Option("--limit", help="The function's SM limit (0-1); default 2 × its request."),
    ] = None,
    peak_load: Annotated[
        float,
        typer.Option("--peak-load", help="Busiest second ÷ one instance's rate at its request."),
    ] = DEFAULT_PEAK_LOAD,
    interference: Annotated[
        float,
        typer.Option("--interference", help="Batch slow-down per unit of co-runner share."),
    ] = 0.5,
    cold_start: Annotated[
        float, typer.Option("--cold-start", help="Seconds before a new instance takes traffic.")
    ] = 5.0,
    duration: Annotated[
        int | None, typer.Option("--duration", help="Replay only the trace's first N seconds.")
    ] = None,
    max_instances: Annotated[
        int, typer.Option("--max-instances", help="Most instances the scaler may run.")
    ] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the Poisson arrivals.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write GPUs and co-runner work over time (PNG).")
    ] = None,
) -> None:
    """Serve TRACE on GPUs shared with a low-priority co-runner: Dilu's co-scaling against
    static-request, static-limit, horizontal-only and Exclusive."""
    from batchwise.gpu.latency_grid import LatencyGrid
    from batchwise.sim.gpu_serving import Mode
    from batchwise.traces.loaders import load_rps

    modes = one_or_all("--mode", mode, Mode, "mode")
    in_range("--qos", qos, 0.0, 3600.0, low_open=True)
    if slo is not None:
        in_range("--slo", slo, 0.0, 3600.0, low_open=True)
    if limit is not None:
        in_range("--limit", limit, 0.0, 1.0, low_open=True)
    in_range("--peak-load", peak_load, 0.0, MAX_PEAK_LOAD, low_open=True)
    in_range("--interference", interference, 0.0, MAX_INTERFERENCE)
    in_range("--cold-start", cold_start, 0.0, MAX_COLD_START_S)
    in_range("--max-instances", max_instances, 1, MAX_INSTANCES)
    in_range("--corunner-batch", corunner_batch, 1, 1024)
    if duration is not None:
        in_range("--duration", duration, 1, MAX_DURATION_S)
    in_range("--seed", seed, 0, 2**32 - 1)
    if plot is not None:
        check_output_file(plot, "--plot", ".png")
    rates = load_rps(trace)
    if duration is not None:
        rates = rates[:duration]
    if len(rates) > MAX_DURATION_S:
        raise ConfigError(f"{len(rates)} seconds, more than the {MAX_DURATION_S} one run may "
                          "replay (use --duration)", file=str(trace))  # fmt: skip
    if not float(rates.max()) > 0:
        raise ConfigError("every rate is 0: nothing to serve", file=str(trace))
    fn = LatencyGrid.from_csv(grid)
    co = LatencyGrid.from_csv(corunner_grid) if corunner_grid is not None else None
    if co is not None and corunner_batch not in co.batches:
        sizes = ", ".join(map(str, co.batches))
        raise ConfigError(f"batch {corunner_batch} is not in the co-runner's grid ({sizes})",
                          field="--corunner-batch")  # fmt: skip
    setup, search = make_setup(fn, grid, qos, co, corunner_batch, slo, limit, interference,
                               cold_start, max_instances)  # fmt: skip
    scale = peak_load * setup.grid.throughput(setup.batch_size, setup.request) / float(rates.max())
    expected = float(rates.sum()) * scale
    if expected > MAX_REQUESTS:
        raise ConfigError(f"about {expected:.0f} requests per mode, more than {MAX_REQUESTS}: "
                          "lower --peak-load or --duration", field="--peak-load")  # fmt: skip
    results = run_modes(setup, modes, rates * scale, seed)
    report = _report(trace, grid, corunner_grid, setup, search, scale, len(rates), results)
    if plot is not None:
        plot_timeline(results, plot, Path(trace).name)
        report["plot"] = str(plot)
    emit_report(report, as_json, print_report)


def make_setup(
    fn: LatencyGrid, grid: Path, qos: float, co: LatencyGrid | None, corunner_batch: int,
    slo: float | None, limit: float | None, interference: float, cold_start: float,
    max_instances: int,
) -> tuple[CoscaleSetup, dict[str, Any]]:  # fmt: skip
    """The function sized by the pruning search; the co-runner fills the guarantee left."""
    from batchwise.gpu.measure import GridMeasurer, load_grid
    from batchwise.gpu.search import NoShareMeetsQos, hybrid_search
    from batchwise.sim.gpu_serving import CoscaleSetup

    try:
        found = hybrid_search(GridMeasurer(load_grid(grid), str(grid)), qos)
    except NoShareMeetsQos as exc:
        raise ConfigError(str(exc), field="--qos") from None
    request = found.sm_percent / 100
    lim = limit if limit is not None else min(1.0, DEFAULT_LIMIT_FACTOR * request)
    if lim < request:
        raise ConfigError(f"must be at least the request {request:g} the search picked, got "
                          f"{lim:g}", field="--limit")  # fmt: skip
    co_request = max(0.01, 1.0 - request)
    co_limit = max(co_request, min(1.0, DEFAULT_LIMIT_CAPACITY - lim))
    setup = CoscaleSetup(
        fn, found.batch_size, request, lim, slo if slo is not None else DEFAULT_SLO_FACTOR * qos,
        co, corunner_batch, co_request, co_limit, interference, cold_start,
        max_instances=max_instances,
    )  # fmt: skip
    search = {"sm_percent": found.sm_percent, "batch_size": found.batch_size,
              "measurements": found.measurements}  # fmt: skip
    return setup, search


def run_modes(setup: CoscaleSetup, modes: list[Any], rates: np.ndarray,
              seed: int) -> dict[str, CoscaleResult]:  # fmt: skip
    """One replay per mode, the same arrivals for each (same seed); progress on stderr."""
    from batchwise.sim.gpu_serving import simulate

    results = {}
    for i, m in enumerate(modes, start=1):
        sys.stderr.write(f"[{i}/{len(modes)}] {m.value}\n")
        results[m.value] = simulate(setup, m, rates, seed)
    return results


def _report(
    trace: Path, grid: Path, co_grid: Path | None, s: CoscaleSetup, search: dict[str, Any],
    scale: float, seconds: int, results: dict[str, CoscaleResult],
) -> dict[str, Any]:  # fmt: skip
    """The ``--json`` object (fields in the README's table)."""
    function = {"grid": str(grid), **search, "request": s.request, "limit": s.limit,
                "slo_s": s.slo_s}  # fmt: skip
    corunner = None if s.corunner is None else {
        "grid": str(co_grid), "batch_size": s.corunner_batch, "request": s.corunner_request,
        "limit": s.corunner_limit,
    }  # fmt: skip
    return {
        "trace": str(trace),
        "seconds": seconds,
        "rps_scale": scale,
        "function": function,
        "corunner": corunner,
        "interference": s.interference,
        "cold_start_s": s.cold_start_s,
        "modes": {name: r.to_dict() for name, r in results.items()},
    }


def print_report(report: dict[str, Any], out: Console) -> None:
    f = report["function"]
    out.print(f"{report['trace']}: {report['seconds']} s × {report['rps_scale']:.3g}; function "
              f"{f['sm_percent']} % SM (limit {f['limit']:g}), batch {f['batch_size']}, SLO "
              f"{f['slo_s']:g} s", markup=False, highlight=False)  # fmt: skip
    table = Table(show_edge=False)
    cols = ("mode", "QoS viol", "p99 (s)", "req/s", "co-runner GPUs", "device-s",
            "net device-s", "peak inst", "emergencies")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col == "mode" else "right")
    for name, r in report["modes"].items():
        table.add_row(name, f"{r['qos_violation_rate']:.2%}", f"{r['p99_latency_s']:.3f}",
                      f"{r['inference_throughput']:.1f}", f"{r['corunner_gpu_equivalents']:.3f}",
                      f"{r['device_seconds']:.0f}", f"{r['net_device_seconds']:.0f}",
                      str(r["peak_instances"]), str(r["emergencies"]))  # fmt: skip
    out.print(table)
    if "plot" in report:
        out.print(f"plot written to {report['plot']}", markup=False, highlight=False)


def plot_timeline(results: dict[str, CoscaleResult], path: Path, title: str) -> Path:
    """GPUs held and co-runner work (GPU-equivalents) per second, one line per mode."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from batchwise.outputs import save_figure

    fig = Figure(figsize=(9, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    first = next(iter(results.values()))
    rps = top.twinx()
    rps.plot(first.timeline["t"], first.timeline["rps"], color="0.8", lw=0.8)
    rps.set_ylabel("requests per second", color="0.5")
    for name, r in results.items():
        top.step(r.timeline["t"], r.timeline["gpus"], where="post", label=name)
        window = max(1, math.ceil(len(r.timeline["t"]) / 200))
        smooth = _moving_mean(r.timeline["corunner"], window)
        bottom.plot(r.timeline["t"], smooth, label=name)
    top.set_zorder(rps.get_zorder() + 1)
    top.patch.set_visible(False)
    top.set_ylabel("GPUs held")
    top.set_title(f"{title}: GPUs held (grey: offered load)", fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    bottom.set_ylabel("co-runner work (GPU-equivalents)")
    bottom.set_xlabel("time (s)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    FigureCanvasAgg(fig)
    return save_figure(fig, path)


def _moving_mean(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out
