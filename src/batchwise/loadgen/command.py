"""``batchwise load``: the typer command (the CLI registers it: ``app.command("load")``).

Everything a user can get wrong is checked before any load is sent, in this order:
option values, ``--trace`` syntax, the target URL (loopback only unless
``--allow-remote``), the ``--plot`` path, then the gateway itself (reachable, ready,
token accepted, serving a plan) and the trace files. Each is one ConfigError line
(exit 2 through the CLI's error boundary).

Output: results on stdout (a table and summary lines, or exactly one JSON object
under ``--json``); a progress line per window on stderr in both cases. Ctrl-C stops
sending, waits briefly for answers, reports what was measured (``interrupted``:
true) and exits with status 130 (SIGTERM: the same, status 143).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from batchwise.config.limits import MIN_WINDOW_S
from batchwise.errors import ConfigError
from batchwise.options import emit_report, in_range
from batchwise.outputs import check_output_file
from batchwise.traces.spec import parse_spec

if TYPE_CHECKING:  # the engine (and aiohttp) load only when the command runs
    from batchwise.loadgen.client import Progress

MAX_LOAD_DURATION_S = 86_400.0
"""Longest load run (s): one day."""
MAX_RATE_SCALE = 1000.0
"""Largest ``--rate-scale``."""
MAX_TIMEOUT_S = 3600.0
"""Largest per-request ``--timeout`` (s)."""
EXIT_INTERRUPTED = 130
"""Exit status of a run stopped early (128 + the signal: 130 Ctrl-C, 143 SIGTERM)."""

TraceOpt = Annotated[  # also `simulate --trace` (one option, one help text)
    list[str] | None,
    typer.Option(
        "--trace",
        "-t",
        help="Arrivals: 'poisson', or [APP=]minute:FILE|app1..app4, [APP=]rps:FILE, "
        "[APP=]timestamps:FILE. Repeatable. Without APP= the shape drives every other app, "
        "rescaled to its planned rate.",
    ),
]


def load_command(
    target: Annotated[str, typer.Argument(help="Gateway base URL, e.g. http://127.0.0.1:8000.")],
    trace: TraceOpt = None,
    duration: Annotated[float, typer.Option(help="Seconds of load to send (1..86400).")] = 60.0,
    rate_scale: Annotated[
        float, typer.Option("--rate-scale", help="Multiply the served plan's rates (0 < x ≤ 1000).")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the arrivals and the request texts.")] = 0,
    window: Annotated[
        float, typer.Option(help="Timeline window and progress interval (s).")
    ] = 10.0,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a timeline PNG here.")] = None,
    records: Annotated[
        Path | None,
        typer.Option("--records", help="Write every request's outcome here (CSV, one row each)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Per-request client timeout (s).")] = 30.0,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="BATCHWISE_TOKEN",
            show_default=False,
            help="Bearer token of the gateway (default: $BATCHWISE_TOKEN).",
        ),
    ] = None,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow a target that is not this machine.")
    ] = False,
) -> None:
    """Send open-loop load from a trace to a live gateway; report latency, SLOs and cost.

    Rates are the served plan's (GET /v1/plan) times --rate-scale. Every request is sent
    at its scheduled time however many are outstanding, and its latency counts from
    that time. Exit status 2 for a bad option or an unreachable gateway, 130 after
    Ctrl-C and 143 after SIGTERM (the partial report is printed).
    """
    from batchwise.loadgen.client import LoadOptions, check_target, run_load
    from batchwise.loadgen.report import (
        plot_timeline,
        print_report,
        summarize,
        trace_title,
        write_records,
    )

    in_range("--duration", duration, 1.0, MAX_LOAD_DURATION_S)
    in_range("--rate-scale", rate_scale, 0.0, MAX_RATE_SCALE, low_open=True)
    in_range("--window", window, MIN_WINDOW_S, MAX_LOAD_DURATION_S)
    in_range("--timeout", timeout, 0.0, MAX_TIMEOUT_S, low_open=True)
    if seed < 0:
        raise ConfigError(f"must be >= 0, got {seed}", field="--seed")
    traces = list(trace or ["poisson"])
    for spec in traces:
        parse_spec(spec)
    check_target(target, allow_remote)
    if plot is not None:
        check_output_file(plot, "--plot", ".png")
    if records is not None:
        check_output_file(records, "--records", ".csv")
    opts = LoadOptions(target=target, traces=traces, duration_s=duration, rate_scale=rate_scale,
                       seed=seed, window_s=window, timeout_s=timeout, token=token or None,
                       allow_remote=allow_remote)  # fmt: skip
    err = Console(stderr=True, soft_wrap=True)
    m = run_load(opts, on_progress=lambda p: err.print(progress_line(p), markup=False,
                                                       highlight=False))  # fmt: skip
    report = summarize(m)
    if plot is not None:
        plot_timeline(m, plot, trace_title(traces, rate_scale))
        report["plot"] = str(plot)
    if records is not None:
        report["records"] = str(write_records(m, records))
    out = emit_report(report, as_json, print_report)
    if out is not None and plot is not None:
        out.print(f"plot written to {plot}", markup=False, highlight=False)
    if out is not None and records is not None:
        out.print(f"records written to {records}", markup=False, highlight=False)
    if m.interrupted:
        raise typer.Exit(128 + m.stop_signal if m.stop_signal else EXIT_INTERRUPTED)


def progress_line(p: Progress) -> str:
    """One stderr line per window: where the run is and what came back so far."""
    inst = "-" if p.instances is None else str(p.instances)
    return (f"load {p.t_s:5.0f}/{p.duration_s:g} s: sent {p.sent}, ok {p.ok}, "
            f"rejected {p.rejected}, errors {p.errors}, outstanding {p.outstanding}, "
            f"instances {inst}")  # fmt: skip
