"""``batchwise gpu profile``: pick a GPU function's SM share and batch by pruning search.

Why a command of its own: Dilu sizes each function by measuring 6–10 points instead
of a 60-point grid (:mod:`batchwise.gpu.search`). The points come from one of three
sources (:mod:`batchwise.gpu.measure`): a replayed grid (``--grid``, which also reports
the best point of the whole grid and how far the pick is from it), live on this
machine's CPUs with the share as a vCPU quota (``--live-cpu``), or live on a GPU under
MPS (``--live-gpu``).

Every option is checked before anything is measured; each mistake, a bad grid row, and
a QoS no point meets is one ConfigError line (exit 2 through the CLI's boundary).
Results go to stdout (a table, or one JSON object under ``--json``); live runs print
one progress line per point on stderr.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchwise.errors import ConfigError
from batchwise.gpu.measure import LIVE_REPEATS

if TYPE_CHECKING:  # the search and the live machinery load only when the command runs
    from batchwise.gpu.measure import Measurement, Measurer
    from batchwise.gpu.search import Point, SearchResult

MAX_QOS_S = 3600.0
"""Largest ``--qos`` (s): an hour per batch is no latency target."""
MAX_BATCH_LIMIT = 1024
"""Largest ``--max-batch`` and ``--batch``."""
MAX_REPEATS = 1000
"""Most batches timed per live point (``--repeats``)."""
SOURCES = ("--grid", "--live-cpu", "--live-gpu")
"""The measurement sources; exactly one is given."""


def profile_command(
    grid: Annotated[
        Path | None, typer.Option("--grid", help="Replay this latency grid (CSV, no header).")
    ] = None,
    live_cpu: Annotated[
        str | None,
        typer.Option(
            "--live-cpu",
            help="Measure this model live here (sleep, minilm, …); the share is a vCPU quota.",
        ),
    ] = None,
    live_gpu: Annotated[
        str | None,
        typer.Option("--live-gpu", help="Measure on a GPU under CUDA MPS: mlp or module:fn."),
    ] = None,
    qos: Annotated[
        str | None, typer.Option("--qos", help="Inference latency target (s per batch).")
    ] = None,
    training: Annotated[
        bool, typer.Option("--training", help="Training: smallest share keeping 98 % throughput.")
    ] = False,
    batch: Annotated[int | None, typer.Option("--batch", help="Training batch size.")] = None,
    max_batch: Annotated[
        int, typer.Option("--max-batch", help="Largest batch the inference search tries.")
    ] = 32,
    sm_step: Annotated[int, typer.Option("--sm-step", help="Share step (SM %, divides 100).")] = 10,
    options: Annotated[
        str, typer.Option(help="Live model's options as a JSON object (--live-cpu).")
    ] = "{}",
    vcpus: Annotated[
        float | None, typer.Option(help="vCPUs standing for 100 % (--live-cpu; default: cores).")
    ] = None,
    repeats: Annotated[
        int | None, typer.Option(help=f"Batches timed per live point (default {LIVE_REPEATS}).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Pick an SM share and batch size by Dilu's pruning search (6–10 measurements).

    Inference (--qos): the hybrid growth search over (SM %, batch). Training
    (--training --batch N): binary search for the smallest share keeping 98 % of the
    full device's throughput. Exit status 2 for a bad option or grid, or a QoS that no
    share meets.
    """
    from batchwise.gpu.search import NoShareMeetsQos, hybrid_search, training_search

    source = _one_source(grid, live_cpu, live_gpu)
    qos_s = _mode(qos, training, batch)
    _check_ints(max_batch, sm_step, batch)
    _check_live_options(source, options, vcpus, repeats)
    measurer = _measurer(source, grid, live_cpu or live_gpu or "", options, vcpus,
                         repeats or LIVE_REPEATS, training)  # fmt: skip
    if source != "--grid":
        measurer = _Announced(measurer, getattr(measurer, "vcpu", None))
    try:
        if qos_s is None:
            result = training_search(measurer, batch or 1, sm_step=sm_step)
        else:
            result = hybrid_search(measurer, qos_s, max_batch=max_batch, sm_step=sm_step)
    except NoShareMeetsQos as exc:
        raise ConfigError(str(exc), file=str(grid) if grid else None, field="--qos") from None
    report = _report(result, _inner(measurer), qos_s)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, allow_nan=False) + "\n")
    else:
        _print(result, report)


def _one_source(grid: Path | None, live_cpu: str | None, live_gpu: str | None) -> str:
    given = [name for name, v in zip(SOURCES, (grid, live_cpu, live_gpu), strict=True)
             if v is not None]  # fmt: skip
    if len(given) != 1:
        got = f"got {' and '.join(given)}" if given else "got none"
        field = given[-1] if given else "--grid"
        raise ConfigError(f"give exactly one of --grid FILE.csv, --live-cpu MODEL, "
                          f"--live-gpu MODEL ({got})", field=field)  # fmt: skip
    return given[0]


def _mode(qos: str | None, training: bool, batch: int | None) -> float | None:
    """The QoS (s) for inference, None for training; the mode's options are checked."""
    if training:
        if qos is not None:
            raise ConfigError("a training job has no latency target: drop --qos or --training",
                              field="--qos")  # fmt: skip
        if batch is None:
            raise ConfigError("--training needs the job's batch size (--batch N)", field="--batch")
        return None
    if batch is not None:
        raise ConfigError("only with --training (inference searches over batches)",
                          field="--batch")  # fmt: skip
    if qos is None:
        raise ConfigError("needs --qos SECONDS (inference) or --training", field="--qos")
    try:
        value = float(qos)
    except ValueError:
        raise ConfigError(f"must be a number of seconds, got {qos!r}", field="--qos") from None
    if not (math.isfinite(value) and 0 < value <= MAX_QOS_S):
        raise ConfigError(f"must be a number in (0, {MAX_QOS_S:g}] seconds, got {qos}",
                          field="--qos")  # fmt: skip
    return value


def _check_ints(max_batch: int, sm_step: int, batch: int | None) -> None:
    if not 1 <= max_batch <= MAX_BATCH_LIMIT:
        raise ConfigError(f"must be in 1..{MAX_BATCH_LIMIT}, got {max_batch}", field="--max-batch")
    if not 1 <= sm_step <= 100 or 100 % sm_step:
        raise ConfigError(f"must divide 100 (e.g. 10, 20, 25), got {sm_step}", field="--sm-step")
    if batch is not None and not 1 <= batch <= MAX_BATCH_LIMIT:
        raise ConfigError(f"must be in 1..{MAX_BATCH_LIMIT}, got {batch}", field="--batch")


def _check_live_options(
    source: str, options: str, vcpus: float | None, repeats: int | None
) -> None:
    if vcpus is not None and source != "--live-cpu":
        raise ConfigError("only with --live-cpu", field="--vcpus")
    if options != "{}" and source != "--live-cpu":
        raise ConfigError("only with --live-cpu", field="--options")
    if repeats is not None and source == "--grid":
        raise ConfigError("only with --live-cpu or --live-gpu", field="--repeats")
    if repeats is not None and not 1 <= repeats <= MAX_REPEATS:
        raise ConfigError(f"must be in 1..{MAX_REPEATS}, got {repeats}", field="--repeats")
    if vcpus is not None:
        import os

        from batchwise.profiling.cpu import MIN_VCPU

        cores = os.cpu_count() or 1
        if not MIN_VCPU <= vcpus <= cores:
            raise ConfigError(f"must be in {MIN_VCPU:g}..{cores} (this machine's cores), got "
                              f"{vcpus:g}", field="--vcpus")  # fmt: skip


def _measurer(source: str, grid: Path | None, model: str, options: str, vcpus: float | None,
              repeats: int, training: bool) -> Measurer:  # fmt: skip
    from batchwise.gpu.measure import CpuQuotaMeasurer, GridMeasurer, MpsMeasurer

    if source == "--grid":
        assert grid is not None
        return GridMeasurer.from_csv(grid)
    if source == "--live-gpu":
        return MpsMeasurer(model, repeats, training)
    from batchwise.profiling.command import parse_options

    opts = parse_options(options)
    try:
        return CpuQuotaMeasurer(model, opts, vcpus, repeats)
    except TypeError as exc:
        raise ConfigError(str(exc), field="--options") from None
    except ValueError as exc:
        raise ConfigError(str(exc), field="--options") from None


class _Announced:
    """A live measurer that says each point on stderr as it is measured (runs take s)."""

    def __init__(self, inner: Any, vcpu: Any) -> None:
        self.inner, self._vcpu, self._n = inner, vcpu, 0
        self._err = Console(stderr=True, soft_wrap=True)

    def measure(self, batch: int, sm_percent: int) -> Measurement:
        self._n += 1
        quota = f" ({self._vcpu(sm_percent):g} vCPU)" if self._vcpu else ""
        m = self.inner.measure(batch, sm_percent)
        self._err.print(f"measured {self._n}: batch {batch} at {sm_percent} % SM{quota}: "
                        f"{m.latency_s:.4f} s, {m.throughput:.1f}/s", markup=False,
                        highlight=False)  # fmt: skip
        return m


def _inner(measurer: Any) -> Any:
    return measurer.inner if isinstance(measurer, _Announced) else measurer


def _report(result: SearchResult, measurer: Any, qos_s: float | None) -> dict[str, Any]:
    """The documented ``gpu profile --json`` object."""
    out: dict[str, Any] = {
        "mode": result.mode, "source": measurer.source, "sm_percent": result.sm_percent,
        "batch_size": result.batch_size, "measurements": result.measurements,
        "pick_te": round(result.pick_te, 4), "stop": str(result.stop),
    }  # fmt: skip
    if qos_s is None:
        from batchwise.gpu.search import TRAINING_KEEP

        out["keep"] = TRAINING_KEEP
    else:
        out["qos_s"] = qos_s
    out["trace"] = [p.to_dict() for p in result.trace]
    if measurer.source == "grid":
        out["grid"] = measurer.path
        out.update(_versus_grid(result, measurer.points, qos_s))
    elif measurer.source == "cpu-quota":
        out.update(model=measurer.model, cpu_quota=measurer.mechanism, vcpus=measurer.vcpus)
    else:
        out["model"] = measurer.model
    return out


def _versus_grid(result: SearchResult, points: Any, qos_s: float | None) -> dict[str, Any]:
    from batchwise.gpu.search import grid_best, grid_training_best, te_gap

    best: Point | None = (grid_training_best(points, result.batch_size) if qos_s is None
                          else grid_best(points, qos_s))  # fmt: skip
    if best is None:
        return {"grid_best": None, "te_gap": None}
    return {"grid_best": {"sm_percent": best.sm_percent, "batch_size": best.batch_size,
                          "te": round(best.te, 4), "latency_s": best.latency_s,
                          "throughput": best.throughput},
            "te_gap": round(te_gap(result.pick, best), 4)}  # fmt: skip


def _print(result: SearchResult, report: dict[str, Any]) -> None:
    out = Console()
    qos_s = report.get("qos_s")
    what = f"QoS {qos_s:g} s" if qos_s is not None else f"training at batch {result.batch_size}"
    table = Table(title=Text(f"gpu profile ({report['source']}, {what}): points measured"))
    for col in ("#", "batch", "SM %", "latency s", "throughput/s", "TE", "meets QoS"):
        table.add_column(col, justify="right")
    for i, p in enumerate(result.trace, start=1):
        meets = "-" if qos_s is None else ("yes" if p.latency_s <= qos_s else "no")
        table.add_row(str(i), str(p.batch_size), str(p.sm_percent), f"{p.latency_s:.6g}",
                      f"{p.throughput:.4g}", f"{p.te:.4f}", meets)  # fmt: skip
    out.print(table)

    def say(line: str) -> None:
        out.print(Text(line))

    say(f"pick: {result.sm_percent} % SM, batch {result.batch_size}, TE {result.pick_te:.4f} "
        f"— {result.measurements} measurements (stop: {result.stop})")  # fmt: skip
    if report["source"] == "cpu-quota":
        say(f"vCPU quota by {report['cpu_quota']}: 100 % SM = {report['vcpus']:g} vCPU")
    best = report.get("grid_best")
    if best is not None:
        say(f"grid best: {best['sm_percent']} % SM, batch {best['batch_size']}, TE "
            f"{best['te']:.4f} — the pick's TE is {report['te_gap']:.1%} below it")  # fmt: skip
