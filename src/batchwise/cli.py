"""The ``batchwise`` command: one sub-command per job.

Every command that reports results has ``--json`` (one JSON object on stdout,
fields documented in the README). :func:`main` is the one error boundary: a user
mistake (:class:`BatchwiseError`) is one line on stderr — or a JSON error object on
stdout under ``--json`` — with exit status 2; anything else is an internal error:
one line naming the log file that holds the traceback, exit status 1 (``--debug``
shows the traceback instead).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from batchwise.config.apps import AppSpec, Workload, load_workload, resolve_ref
from batchwise.config.limits import MAX_DURATION_S, MIN_WINDOW_S
from batchwise.config.loader import load_document, validate
from batchwise.config.plan import Plan
from batchwise.config.prices import BUILTIN_PRICE_BOOKS, load_prices
from batchwise.config.profiles import BUILTIN_PROFILE_SET, get_profile, load_profiles
from batchwise.errors import BatchwiseError, ConfigError
from batchwise.gpu.command import gpu_app
from batchwise.loadgen.command import TraceOpt as SimTraceOpt
from batchwise.loadgen.command import load_command
from batchwise.options import in_range, one_of
from batchwise.outputs import check_output_dir, check_output_file, write_text
from batchwise.perf.timeout import EqTimeoutFormula
from batchwise.planner import DEFAULT_ALGORITHM, Algorithm, PlannerOptions, plan
from batchwise.planner.compare import compare, rows_to_dicts
from batchwise.planner.objective import DEFAULT_OBJECTIVE, OBJECTIVES
from batchwise.profiling.command import profile_command
from batchwise.report import compare_table, plan_table, print_table
from batchwise.serving.command import serve_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Plan, simulate and serve batched DNN inference at the lowest cost that meets every SLO.",
)
# Pipes get 160 columns (logs stay unwrapped) unless COLUMNS says otherwise.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
err_console = Console(stderr=True, soft_wrap=True)  # errors stay on one line

ERROR_LOG = Path(tempfile.gettempdir()) / "batchwise-error.log"
"""Where an internal error's traceback goes (the one line on stderr names it)."""

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
AlgoOpt = Annotated[
    Algorithm, typer.Option("--algorithm", "-a", help="Planner to use.", case_sensitive=False)
]
ObjectiveOpt = Annotated[
    str,
    typer.Option(
        "--objective",
        help="Cost to minimise per group: full-batch (the paper's Eq. 6) or expected "
        "(with Poisson batch sizes, what is paid).",
    ),
]
EqOpt = Annotated[
    str, typer.Option("--eq-timeout", help="Equivalent-timeout formula: eq5 (paper) or tightest.")
]


def _package_version() -> str:
    try:
        return version("batchwise")
    except PackageNotFoundError:  # running from a source tree without metadata
        return "unknown"


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"batchwise {_package_version()}\n")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
    _debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an internal error.")
    ] = False,
) -> None:
    """Plan, simulate and serve batched DNN inference at the lowest cost that meets every SLO."""


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _options(eq_timeout: str, objective: str = DEFAULT_OBJECTIVE) -> PlannerOptions:
    if eq_timeout not in ("eq5", "tightest"):
        raise ConfigError(f"must be 'eq5' or 'tightest', got {eq_timeout!r}", field="--eq-timeout")
    one_of("--objective", objective, OBJECTIVES)
    formula: EqTimeoutFormula = "eq5" if eq_timeout == "eq5" else "tightest"
    return PlannerOptions(eq_timeout=formula, objective=objective)


@contextmanager
def _status(text: str, apps: int) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while planning many apps (terminals only; silent in pipes)."""
    if apps < STATUS_MIN_APPS or not err_console.is_terminal:
        yield lambda _msg: None
        return
    with err_console.status(text) as status:
        yield lambda msg: status.update(f"{text}: {msg}")


STATUS_MIN_APPS = 200
"""Plans of at least this many apps show a spinner (they take seconds)."""


def plan_json(p: Plan) -> dict[str, Any]:
    """The documented ``plan --json`` shape (CPU functions omit ``gpu_memory_gb``)."""
    return p.model_dump(mode="json", exclude_none=True)


def _make_plan(wl: Workload, algorithm: str, options: PlannerOptions) -> Plan:
    p = plan(list(wl.apps), wl.profile, wl.prices, algorithm, options)
    p.profiles = wl.profiles_ref
    p.prices = wl.prices_ref
    return p


AppsArg = Annotated[str, typer.Argument(help="Apps file (YAML or JSON); '-' reads stdin.")]


@app.command("plan")
def plan_cmd(
    apps_file: AppsArg,
    algorithm: AlgoOpt = DEFAULT_ALGORITHM,
    as_json: JsonOpt = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the plan JSON here.")
    ] = None,
    eq_timeout: EqOpt = "eq5",
    objective: ObjectiveOpt = DEFAULT_OBJECTIVE,
) -> None:
    """Group apps and pick functions, batch sizes and timeouts at minimum cost."""
    if output is not None:
        check_output_file(output, "--output")
    options = _options(eq_timeout, objective)
    wl = load_workload(apps_file)
    with _status(f"planning {len(wl.apps)} apps with {algorithm.value}", len(wl.apps)):
        p = _make_plan(wl, algorithm.value, options)
    if output is not None:
        write_text(output, json.dumps(plan_json(p), indent=2) + "\n")
    if as_json:
        _emit_json(plan_json(p))
    else:
        print_table(plan_table(p), console)


@app.command("compare")
def compare_cmd(
    apps_file: AppsArg,
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG bar chart here.")] = None,
    eq_timeout: EqOpt = "eq5",
    objective: ObjectiveOpt = DEFAULT_OBJECTIVE,
) -> None:
    """Run every planner on one workload and compare costs.

    Exit status 2 when no planner finds a plan (the first planner's reason is shown).
    """
    if plot is not None:
        check_output_file(plot, "--plot", ".png")
    options = _options(eq_timeout, objective)
    wl = load_workload(apps_file)
    with _status(f"comparing planners on {len(wl.apps)} apps", len(wl.apps)) as say:
        rows, _ = compare(list(wl.apps), wl.profile, wl.prices, options=options, on_planner=say)
    if all(r.cost_per_request is None for r in rows):
        raise BatchwiseError(f"no planner found a plan: {rows[0].algorithm}: {rows[0].error}")
    if plot is not None:
        from batchwise.plots import plot_compare

        title = f"{wl.profile.name}: {len(wl.apps)} apps, every planner ({wl.prices.name})"
        plot_compare(rows, plot, title)
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
            console.print(f"plot written to {escape(str(plot))}")


@app.command("models")
def models_cmd(
    profiles: Annotated[
        str | None, typer.Option(help="Profile set (built-in name or file).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the models of a profile set."""
    ref = resolve_ref(profiles, Path.cwd(), [BUILTIN_PROFILE_SET], "profile set")
    ps = load_profiles(ref)
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
                f"{escape(r['model'])}: CPU batch ≤ {r['cpu_max_batch']}, "
                f"GPU batch ≤ {r['gpu_max_batch']}"
            )


def load_plan_context(path: Path | str) -> tuple[Plan, Any, Any, list[AppSpec]]:
    """Load a plan JSON (checked against its profile and price book), or an apps file.

    The plan's ``profiles``/``prices`` files resolve against the plan file's folder.
    """
    from batchwise.planner.verify import verify_plan

    data, lines, source = load_document(path)
    if isinstance(data, dict) and "groups" in data:
        p = validate(Plan, data, source, lines)
        base = Path(path).parent
        try:
            p_ref = resolve_ref(p.profiles, base, [BUILTIN_PROFILE_SET], "profile set")
            profiles = load_profiles(p_ref)
        except ConfigError as exc:
            raise exc.within(_at(source, lines, "profiles")) from None
        profile = get_profile(profiles, p.model, source, lines.get(("model",)))
        try:
            prices = load_prices(resolve_ref(p.prices, base, BUILTIN_PRICE_BOOKS, "price book"))
        except ConfigError as exc:
            raise exc.within(_at(source, lines, "prices")) from None
        p = verify_plan(p, profile, prices, source, lines)
    else:
        wl = load_workload(path)
        p = _make_plan(wl, DEFAULT_ALGORITHM.value, PlannerOptions())
        profile, prices = wl.profile, wl.prices
    rates = p.app_rates()
    slos = {a: s for g in p.groups for a, s in g.slos.items()}
    apps = [AppSpec(name=a, slo=slos[a], rate=r) for a, r in rates.items()]
    return p, profile, prices, apps


def _at(source: str, lines: Any, field: str) -> str:
    line = lines.get((field,))
    return f"{source}:{line}: {field}" if line else f"{source}: {field}"


@app.command("simulate")
def simulate_cmd(
    plan_file: Annotated[
        str, typer.Argument(help="Plan JSON (from 'plan -o'), or an apps file; '-': stdin.")
    ],
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
    instances: Annotated[
        int | None,
        typer.Option(help="Finite mode: warm instances per group (default: serverless)."),
    ] = None,
    max_instances: Annotated[
        int | None, typer.Option(help="Finite mode: instances a group may grow to.")
    ] = None,
    cold_start: Annotated[
        float, typer.Option(help="Finite mode: seconds before a new instance serves.")
    ] = 0.0,
    overhead: Annotated[
        float | None,
        typer.Option(
            help="Finite mode: seconds each request spends outside batching (HTTP, "
            "IPC), kept out of the timeouts as the gateway does [default: 0.015]."
        ),
    ] = None,
    cpu_period_ms: Annotated[
        float | None,
        typer.Option(
            help="Finite mode: CFS period of CPU instances' vCPU quotas (ms); 0: "
            "charge every batch the profile's back-to-back time [default: 100]."
        ),
    ] = None,
    admission: Annotated[
        bool | None,
        typer.Option(
            "--admission/--no-admission",
            help="Finite mode: refuse requests the queue would make late, as 'serve' "
            "does [default: on].",
        ),
    ] = None,
    idle_slowdown: Annotated[
        bool | None,
        typer.Option(
            "--idle-slowdown/--no-idle-slowdown",
            help="Finite mode: a batch after its instance sat idle runs slower by the "
            "profile's idle_slowdown (measured by 'batchwise profile') [default: on].",
        ),
    ] = None,
    autoscale: Annotated[
        bool,
        typer.Option(
            "--autoscale",
            help="Finite mode, sized as 'serve' sizes it: groups start with the "
            "instances their planned load needs (or --instances) and the live "
            "controller grows them (vertically first) and starts or drains instances "
            "every second, within --cores.",
        ),
    ] = False,
    cores: Annotated[
        float | None,
        typer.Option(
            help="With --autoscale: vCPUs the instances fit in [default: this machine's cores]."
        ),
    ] = None,
    batch_order: Annotated[
        str | None,
        typer.Option(
            "--batch-order",
            help="Finite mode: 'arrival' or 'deadline', as serve --batch-order [default: arrival].",
        ),
    ] = None,
    overload_share: Annotated[
        str | None,
        typer.Option(
            "--overload-share",
            help="Finite mode: 'first-come' or 'even', as serve "
            "--overload-share [default: first-come].",
        ),
    ] = None,
    standby: Annotated[
        int | None,
        typer.Option(
            help="With --autoscale: warm standby instances per group, as serve "
            "--standby (a scale-up promotes one at once) [default: 1]."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay arrivals through a plan in virtual time: cost, SLO violations, latencies.

    With --instances, each group has that many warm instances (requests wait in the
    batcher while all are busy; up to --max-instances start after --cold-start; with
    --autoscale, the live controller sizes the groups instead) and batches as the live
    gateway does (timeouts fitted to the worst full batch, less --overhead, which every
    request also pays); a CPU instance of fractional vCPU runs under a CFS quota, as
    'serve' runs it (a batch after an idle spell runs at full speed until the period's
    quota is spent), and each group calibrates, re-times and admits with the gateway's
    code (refused requests are reported apart). Otherwise every batch runs at once on its
    own serverless instance.
    """
    from batchwise.sim.runs import run_simulation

    if duration is not None:
        in_range("--duration", duration, 1e-3, MAX_DURATION_S)
    in_range("--window", window, MIN_WINDOW_S, MAX_DURATION_S)
    if seed < 0:
        raise ConfigError(f"must be >= 0, got {seed}", field="--seed")
    if plot is not None:
        check_output_file(plot, "--plot", ".png")
    pool = _pool(instances, max_instances, cold_start, overhead, cpu_period_ms, admission,
                 autoscale, cores, batch_order, standby, idle_slowdown,
                 overload_share)  # fmt: skip
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
        progress=None if as_json else err_console,
        pool=pool,
    )
    if as_json:
        _emit_json(out.to_dict())
    else:
        out.print(console)


def _pool(instances: int | None, max_instances: int | None, cold_start: float,
          overhead: float | None = None, cpu_period_ms: float | None = None,
          admission: bool | None = None, autoscale: bool = False,
          cores: float | None = None, batch_order: str | None = None,
          standby: int | None = None, idle_slowdown: bool | None = None,
          overload_share: str | None = None) -> Any:  # fmt: skip
    from batchwise.perf.cfs import DEFAULT_PERIOD_S
    from batchwise.serving.deadlines import DEFAULT_OVERHEAD_S
    from batchwise.sim.instances import PoolSpec

    for name, v in (("--cores", cores), ("--standby", standby)):
        if v is not None and not autoscale:
            raise ConfigError("needs --autoscale (the controller sizes the groups)", field=name)
    if standby is not None:
        in_range("--standby", standby, 0, 64)
    if autoscale and max_instances is not None:
        raise ConfigError("the controller sizes groups under --autoscale (use --cores)",
                          field="--max-instances")  # fmt: skip
    if instances is None and not autoscale:
        for name, v in (("--max-instances", max_instances), ("--overhead", overhead),
                        ("--cpu-period-ms", cpu_period_ms), ("--batch-order", batch_order),
                        ("--overload-share", overload_share),
                        ("--admission/--no-admission", admission),
                        ("--idle-slowdown/--no-idle-slowdown", idle_slowdown)):  # fmt: skip
            if v is not None:
                raise ConfigError("needs --instances (the warm pool size)", field=name)
        return None
    if cores is not None:
        in_range("--cores", cores, 0.1, 4096.0)
    from batchwise.serving.batcher import ARRIVAL, ORDERS
    from batchwise.serving.group_core import FIRST_COME, SHARES

    if batch_order is not None:
        one_of("--batch-order", batch_order, ORDERS)
    if overload_share is not None:
        one_of("--overload-share", overload_share, SHARES)
    plan_start = instances is None
    instances = 1 if instances is None else instances
    in_range("--instances", instances, 1, MAX_INSTANCES)
    top = instances if max_instances is None else max_instances
    in_range("--max-instances", top, instances, MAX_INSTANCES)
    in_range("--cold-start", cold_start, 0.0, 3600.0)
    overhead = DEFAULT_OVERHEAD_S if overhead is None else overhead
    in_range("--overhead", overhead, 0.0, 60.0)
    period_s: float | None = DEFAULT_PERIOD_S
    if cpu_period_ms is not None:
        if cpu_period_ms != 0:
            in_range("--cpu-period-ms", cpu_period_ms, 1.0, 1000.0)
        period_s = cpu_period_ms / 1e3 if cpu_period_ms else None
    return PoolSpec(instances, top, cold_start, overhead, period_s,
                    admission=True if admission is None else admission, autoscale=autoscale,
                    cores=cores, plan_start=plan_start, batch_order=batch_order or ARRIVAL,
                    overload_share=overload_share or FIRST_COME,
                    standby=1 if standby is None else standby,
                    idle_slowdown=idle_slowdown is not False)  # fmt: skip


MAX_INSTANCES = 10_000
"""Most instances per group in finite mode."""


app.command("load")(load_command)
app.command("serve")(serve_command)
app.command("profile")(profile_command)
app.add_typer(gpu_app, name="gpu")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Folder for the PNGs and the JSON report.")] = Path(
        "out/demo"
    ),
    duration: Annotated[
        float, typer.Option(help="Simulated seconds of the shipped traces.")
    ] = 1800.0,
    live_duration: Annotated[
        float, typer.Option(help="Seconds of live load on the served MiniLM apps (0: none).")
    ] = 60.0,
    live_scale: Annotated[float, typer.Option(help="Live load as a multiple of the plan.")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """End to end: plan the VGG-19 example with every planner, simulate, plot; then serve
    four apps on MiniLM over HTTP, load them and report (profiling MiniLM on first use)."""
    from batchwise.demo import run_demo

    check_output_dir(out, "--out")
    in_range("--duration", duration, 1.0, MAX_DURATION_S)
    if live_duration != 0:
        in_range("--live-duration", live_duration, 1.0, 3600.0)
    in_range("--live-scale", live_scale, 0.01, 100.0)
    report = run_demo(out, duration, console if not as_json else None, live_duration,
                      live_scale)  # fmt: skip
    if as_json:
        _emit_json(report)


SCHEMAS = ("apps", "profile", "prices", "plan", "job")
"""File kinds whose JSON Schema ``batchwise schema`` prints (batchwise.schemas.MODELS)."""


@app.command("schema")
def schema_cmd(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCHEMAS)}.")],
) -> None:
    """Print the JSON Schema of a file kind (for editors and validators)."""
    from batchwise.schemas import json_schema

    if kind not in SCHEMAS:
        raise ConfigError(f"unknown file kind {kind!r}; choose one of: {', '.join(SCHEMAS)}")
    _emit_json(json_schema(kind))


@app.command("batch")
def batch_cmd(
    target: Annotated[str, typer.Argument(help="JOB.yaml to run, or 'status'.")],
    output_dir: Annotated[
        Path | None, typer.Argument(help="With 'status': the job's output dir.")
    ] = None,
    as_json: JsonOpt = False,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh", help="Delete the output dir's journal and outputs first; start over."
        ),
    ] = False,
    cgroup: Annotated[
        Path | None,
        typer.Option(
            "--cgroup", help="Run the job (its workers too) in this cgroup, e.g. serve --harvest's."
        ),
    ] = None,
) -> None:
    """Run a batch-inference job (resumes from its journal), or show a job's status.

    Exit status 0 done; 2 a bad job file, input or output, a job that cannot start,
    another job's journal (status: the job failed); 3 done with quarantined records or
    shards; 130/143 stopped by SIGINT/SIGTERM (re-run the same command to resume).
    """
    from batchwise.batch.errors import JobStopped
    from batchwise.batch.progress import job_status, run_job

    usage = "batchwise batch JOB.yaml [--json] [--fresh] | batchwise batch status DIR [--json]"
    if target == "status":
        if output_dir is None:
            raise BatchwiseError(f"batch status: which output directory? usage: {usage}")
        if fresh:
            raise BatchwiseError(f"--fresh starts a job over; not with 'status' (usage: {usage})")
        report = job_status(output_dir)
    else:
        if output_dir is not None:
            raise BatchwiseError(f"unexpected argument {str(output_dir)!r} (usage: {usage})")
        if cgroup is not None:
            from batchwise.resources.cpu_quota import join

            join(cgroup)
        try:
            report = run_job(Path(target), None if as_json else console, fresh=fresh)
        except JobStopped as exc:  # one line on stderr (and the error object under --json)
            if as_json:
                _emit_json({"error": str(exc), "file": None, "line": None, "field": None})
            err_console.print(str(exc), highlight=False, markup=False)
            raise typer.Exit(exc.exit_code) from None
    if as_json:
        _emit_json(report)
    else:
        _print_batch_report(report)
    if report.get("state") == "failed":
        raise typer.Exit(2)
    if report["shards"]["quarantined"] or report["bad_records"]:
        raise typer.Exit(3)


def _print_batch_report(report: dict) -> None:
    shards = report["shards"]
    if report.get("state") not in (None, "finished"):
        why = f": {report['reason']}" if report.get("reason") else ""
        console.print(f"[bold]job {report['state']}[/]{escape(why)}")
    if report.get("inputs_added"):
        console.print(f"{report['inputs_added']} input file(s) new since the job started: "
                      "processed as new shards")  # fmt: skip
    line = (
        f"shards: {shards['committed']} committed, {shards['quarantined']} quarantined, "
        f"{shards['todo'] + shards['leased']} left · records: {report['records']}"
    )
    if report.get("runs", 0) > 1:
        line += f" (all {report['runs']} runs)"
    if "elapsed_s" in report:
        line += (
            f" · this run: {report['records_this_run']} in {report['elapsed_s']:.1f} s "
            f"({report['records_per_s']:.0f}/s), worker restarts: "
            f"{report['worker_restarts_this_run']}"
        )
    console.print(line)
    for q in report["quarantined"]:
        console.print(f"[red]quarantined shard {q['shard']}[/] after {q['attempts']} attempts: "
                      f"{escape(str(q['error']))}")  # fmt: skip
    for r in report["quarantined_records"]:
        console.print(f"[red]quarantined record[/] {escape(r['record'])}: {escape(r['error'])}")
    if report["bad_records"] > len(report["quarantined_records"]):
        console.print(f"… {report['bad_records']} quarantined records in all (see --json)")
    plot = f" · plot: {report['plot']}" if report.get("plot") else ""
    console.print(f"output: {report['output']}{plot}", markup=False)


def _json_requested(args: list[str]) -> bool:
    return "--json" in args


def _internal_error(exc: BaseException, debug: bool) -> int:
    """One line naming the log that holds the traceback (or the traceback with --debug)."""
    text = "".join(traceback.format_exception(exc))
    if debug:
        sys.stderr.write(text)
        return 1
    where = ERROR_LOG
    try:
        ERROR_LOG.write_text(text, encoding="utf-8")
    except OSError:
        where = Path(os.devnull)
    err_console.print(
        f"internal error: {type(exc).__name__}: {escape(str(exc)[:200])} — this is a bug; "
        f"traceback in {where} (or re-run with --debug)",
        highlight=False,
        markup=False,
    )
    return 1


def _user_error(exc: BatchwiseError, as_json: bool) -> int:
    if as_json:
        _emit_json(exc.to_dict())
    else:
        err_console.print(f"error: {exc}", highlight=False, markup=False, style="bold red")
    return 2


def main(argv: list[str] | None = None) -> None:
    """Console entry point and the one error boundary of the CLI.

    Typer runs with ``standalone_mode=False`` so that usage errors reach this
    function too (and can be JSON under ``--json``); ``--help`` and ``Exit`` come
    back as a return code.
    """
    from typer._click.exceptions import ClickException  # typer vendors its click

    args = sys.argv[1:] if argv is None else list(argv)
    as_json, debug = _json_requested(args), "--debug" in args
    try:
        rc = app(args=args, prog_name="batchwise", standalone_mode=False)
    except BatchwiseError as exc:
        sys.exit(_user_error(exc, as_json))
    except ClickException as exc:
        if as_json:
            _emit_json({"error": exc.format_message(), "file": None, "line": None, "field": None})
        else:
            _show_usage_error(exc)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted", highlight=False, markup=False)
        sys.exit(130)
    except Exception as exc:  # the boundary: anything else is a bug, said in one line
        sys.exit(_internal_error(exc, debug))
    sys.exit(rc if isinstance(rc, int) else 0)


def _show_usage_error(exc: Exception) -> None:
    try:
        from typer import rich_utils

        rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
    except Exception:  # formatting must never hide the error itself
        sys.stderr.write(f"Error: {exc}\n")


if __name__ == "__main__":
    main()
