"""The ``batchwise`` command: one sub-command per job.

Every command that reports results has ``--json`` (one JSON object on stdout,
fields documented in the README). User mistakes exit with status 2 and one
clear message, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from batchwise.config.apps import AppSpec, Workload, load_workload
from batchwise.config.loader import load_model
from batchwise.config.plan import Plan
from batchwise.config.prices import load_prices
from batchwise.config.profiles import get_profile, load_profiles
from batchwise.errors import BatchwiseError
from batchwise.perf.timeout import EqTimeoutFormula
from batchwise.planner import DEFAULT_ALGORITHM, Algorithm, PlannerOptions, plan
from batchwise.planner.compare import compare, rows_to_dicts
from batchwise.report import compare_table, plan_table, print_table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Plan, simulate and serve batched DNN inference at the lowest cost that meets every SLO.",
)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)  # errors stay on one line

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
AlgoOpt = Annotated[
    Algorithm, typer.Option("--algorithm", "-a", help="Planner to use.", case_sensitive=False)
]
EqOpt = Annotated[
    str, typer.Option("--eq-timeout", help="Equivalent-timeout formula: eq5 (paper) or tightest.")
]


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _options(eq_timeout: str) -> PlannerOptions:
    if eq_timeout not in ("eq5", "tightest"):
        raise BatchwiseError(f"--eq-timeout must be 'eq5' or 'tightest', got {eq_timeout!r}")
    formula: EqTimeoutFormula = "eq5" if eq_timeout == "eq5" else "tightest"
    return PlannerOptions(eq_timeout=formula)


def plan_json(p: Plan) -> dict[str, Any]:
    """The documented ``plan --json`` shape (CPU functions omit ``gpu_memory_gb``)."""
    return p.model_dump(mode="json", exclude_none=True)


def _make_plan(wl: Workload, algorithm: str, options: PlannerOptions) -> Plan:
    p = plan(list(wl.apps), wl.profile, wl.prices, algorithm, options)
    p.profiles = wl.profiles_ref
    p.prices = wl.prices_ref
    return p


@app.command("plan")
def plan_cmd(
    apps_file: Annotated[Path, typer.Argument(help="Apps file (YAML or JSON).")],
    algorithm: AlgoOpt = DEFAULT_ALGORITHM,
    as_json: JsonOpt = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the plan JSON here.")
    ] = None,
    eq_timeout: EqOpt = "eq5",
) -> None:
    """Group apps and pick functions, batch sizes and timeouts at minimum cost."""
    wl = load_workload(apps_file)
    p = _make_plan(wl, algorithm.value, _options(eq_timeout))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(plan_json(p), indent=2) + "\n")
    if as_json:
        _emit_json(plan_json(p))
    else:
        print_table(plan_table(p), console)


@app.command("compare")
def compare_cmd(
    apps_file: Annotated[Path, typer.Argument(help="Apps file (YAML or JSON).")],
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG bar chart here.")] = None,
    eq_timeout: EqOpt = "eq5",
) -> None:
    """Run every planner on one workload and compare costs."""
    wl = load_workload(apps_file)
    rows, _ = compare(list(wl.apps), wl.profile, wl.prices, options=_options(eq_timeout))
    if plot is not None:
        from batchwise.plots import plot_compare

        plot_compare(rows, plot, f"{wl.profile.name}: {len(wl.apps)} apps ({wl.prices.name})")
    if as_json:
        _emit_json(
            {
                "model": wl.profile.name,
                "prices": wl.prices.name,
                "currency": wl.prices.currency,
                "baseline": "batch",
                "rows": rows_to_dicts(rows),
                "plot": str(plot) if plot else None,
            }
        )
    else:
        print_table(compare_table(rows, wl.prices.currency), console)
        if plot is not None:
            console.print(f"plot written to {plot}")


@app.command("models")
def models_cmd(
    profiles: Annotated[
        str | None, typer.Option(help="Profile set (built-in name or file).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the models of a profile set."""
    ps = load_profiles(profiles)
    rows = [
        {
            "model": name,
            "cpu_max_batch": p.cpu.max_batch if p.cpu else None,
            "gpu_max_batch": p.gpu.max_batch if p.gpu else None,
        }
        for name, p in ps.items()
    ]
    if as_json:
        _emit_json({"models": rows})
    else:
        for r in rows:
            console.print(
                f"{r['model']}: CPU batch ≤ {r['cpu_max_batch']}, GPU batch ≤ {r['gpu_max_batch']}"
            )


def load_plan_context(path: Path) -> tuple[Plan, Any, Any, list[AppSpec]]:
    """Load a plan JSON, or an apps file (planned with the default algorithm)."""
    from batchwise.config.loader import read_document

    data, _ = read_document(path)
    if isinstance(data, dict) and "groups" in data:
        p = load_model(Plan, path)
        profile = get_profile(load_profiles(p.profiles), p.model, f"{path}: model")
        prices = load_prices(p.prices)
    else:
        wl = load_workload(path)
        p = _make_plan(wl, DEFAULT_ALGORITHM.value, PlannerOptions())
        profile, prices = wl.profile, wl.prices
    rates = p.app_rates()
    slos = {a: s for g in p.groups for a, s in g.slos.items()}
    apps = [AppSpec(name=a, slo=slos[a], rate=r) for a, r in rates.items()]
    return p, profile, prices, apps


SimTraceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--trace",
        "-t",
        help="Arrivals: 'poisson', or [APP=]minute:FILE|app1..app4, [APP=]rps:FILE, "
        "[APP=]timestamps:FILE. Repeatable. Without APP= the shape drives every other app, "
        "rescaled to its planned rate.",
    ),
]


@app.command("simulate")
def simulate_cmd(
    plan_file: Annotated[Path, typer.Argument(help="Plan JSON (from 'plan -o'), or an apps file.")],
    trace: SimTraceOpt = None,
    duration: Annotated[
        float | None,
        typer.Option(help="Seconds to simulate (default: trace length; poisson: 600)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of arrivals, routing and service times.")] = 0,
    replan: Annotated[
        bool,
        typer.Option("--replan/--no-replan", help="Also re-plan every window from observed rates."),
    ] = False,
    window: Annotated[float, typer.Option(help="Re-planning window (s).")] = 60.0,
    algorithm: AlgoOpt = DEFAULT_ALGORITHM,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write a latency-CDF PNG here (and NAME-replan.png)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay arrivals through a plan in virtual time: cost, SLO violations, latencies."""
    from batchwise.sim.runs import run_simulation

    p, profile, prices, apps = load_plan_context(plan_file)
    out = run_simulation(
        p,
        profile,
        prices,
        apps,
        trace or ["poisson"],
        duration,
        seed,
        replan_algorithm=algorithm.value if replan else None,
        window_s=window,
        plot=plot,
    )
    if as_json:
        _emit_json(out.to_dict())
    else:
        out.print(console)


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Folder for the PNGs and the JSON report.")] = Path(
        "out/demo"
    ),
    duration: Annotated[
        float, typer.Option(help="Simulated seconds of the shipped traces.")
    ] = 1800.0,
    as_json: JsonOpt = False,
) -> None:
    """End to end: plan the VGG-19 example with every planner, simulate, plot."""
    from batchwise.demo import run_demo

    report = run_demo(out, duration, console if not as_json else None)
    if as_json:
        _emit_json(report)


@app.command("batch")
def batch_cmd(
    target: Annotated[str, typer.Argument(help="JOB.yaml to run, or 'status'.")],
    output_dir: Annotated[
        Path | None, typer.Argument(help="With 'status': the job's output dir.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a batch-inference job (resumes from its journal), or show a job's status.

    Exit status 3 when records or shards were quarantined (listed in the report).
    """
    from batchwise.batch.progress import job_status, run_job

    if target == "status":
        if output_dir is None:
            raise BatchwiseError("usage: batchwise batch status OUTPUT_DIR")
        report = job_status(output_dir)
    else:
        report = run_job(Path(target), None if as_json else console)
    if as_json:
        _emit_json(report)
    else:
        _print_batch_report(report)
    if report["shards"]["quarantined"] or report["bad_records"]:
        raise typer.Exit(3)


def _print_batch_report(report: dict) -> None:
    shards = report["shards"]
    line = (
        f"shards: {shards['committed']} committed, {shards['quarantined']} quarantined, "
        f"{shards['todo'] + shards['leased']} left · records: {report['records']}"
    )
    if "elapsed_s" in report:
        line += (
            f" in {report['elapsed_s']:.1f} s ({report['records_per_s']:.0f}/s), "
            f"worker restarts: {report['worker_restarts']}"
        )
    console.print(line)
    for q in report["quarantined"]:
        console.print(f"[red]quarantined shard {q['shard']}[/] after {q['attempts']} attempts: "
                      f"{escape(str(q['error']))}")  # fmt: skip
    for r in report["quarantined_records"]:
        console.print(f"[red]quarantined record[/] {escape(r['record'])}: {escape(r['error'])}")
    if report["bad_records"] > len(report["quarantined_records"]):
        console.print(f"… {report['bad_records']} quarantined records in all (see --json)")
    console.print(f"output: {report['output']}" + (f" · plot: {report['plot']}"
                  if report.get("plot") else ""))  # fmt: skip


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 2.

    Typer runs in standalone mode, so it reports usage errors itself (exit 2) and
    handles ``--help``, ``Exit`` and ``Abort``; only our own errors propagate here.
    (Newer typer vendors click, so ``import click`` is not available to catch them.)
    """
    try:
        app()
    except BatchwiseError as exc:
        # escape: a path such as ``apps[test].yaml`` is not rich markup.
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
