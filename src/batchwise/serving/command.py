"""``batchwise serve APPS.yaml``: plan (profiling on first use) and serve over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from batchwise import aio, heap
from batchwise.errors import ConfigError
from batchwise.options import one_of
from batchwise.outputs import check_output_file, write_text
from batchwise.scaling.rates import ESTIMATORS
from batchwise.serving.batcher import ORDERS
from batchwise.serving.gateway import DEFAULT_MAX_BODY
from batchwise.serving.group_core import SHARES
from batchwise.serving.http_server import Gateway
from batchwise.serving.server import ServeOptions, Server
from batchwise.serving.setup import prepare

MAX_PORT = 65535


def serve_command(
    apps_file: Annotated[str, typer.Argument(help="Apps file (YAML or JSON); '-' reads stdin.")],
    profile: Annotated[
        str | None,
        typer.Option(
            help="Profile file with the apps' model "
            "(default: the apps file's, else this "
            "machine's cache, else measured now)."
        ),
    ] = None,
    backend: Annotated[str, typer.Option(help="Where instances run: local or ray.")] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join (backend ray; default: RAY_ADDRESS or a local one)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(help="Require 'Authorization: Bearer TOKEN'.", envvar="BATCHWISE_TOKEN"),
    ] = None,
    max_body: Annotated[int, typer.Option(help="Largest request body (bytes).")] = DEFAULT_MAX_BODY,
    instances: Annotated[
        int | None, typer.Option(help="Instances per group (default: sized from the plan's load).")
    ] = None,
    max_instances: Annotated[int | None, typer.Option(help="Most instances per group.")] = None,
    algorithm: Annotated[str, typer.Option("--algorithm", "-a", help="Planner.")] = "dp",
    cpu_only: Annotated[bool, typer.Option(help="Re-plan on CPU functions only.")] = False,
    admission: Annotated[
        bool,
        typer.Option("--admission/--no-admission", help="Deadline-aware admission (503 early)."),
    ] = True,
    window: Annotated[
        float, typer.Option(help="Re-plan every this many seconds from observed rates (0: never).")
    ] = 60.0,
    rate_estimator: Annotated[
        str, typer.Option(help="Rates to re-plan for: last, ewma or max (of both).")
    ] = "max",
    rate_floor: Annotated[
        float,
        typer.Option(
            "--rate-floor",
            help="Re-plan for at least this fraction of the apps file's rates (0..1; "
            "0: an idle server shrinks its plan to almost nothing).",
        ),
    ] = 1.0,
    autoscale: Annotated[
        bool, typer.Option("--autoscale/--no-autoscale", help="Instances follow the load.")
    ] = True,
    plan_out: Annotated[
        Path | None, typer.Option("--plan-out", help="Also write the served plan (JSON).")
    ] = None,
    harvest: Annotated[
        bool,
        typer.Option(
            "--harvest",
            help="Lend idle CPU to a low-priority cgroup for batch jobs (batch --cgroup PATH).",
        ),
    ] = False,
    surge: Annotated[
        bool,
        typer.Option(
            "--surge/--no-surge",
            help="A group bound by the cores runs its instances on the vCPU left free.",
        ),
    ] = True,
    batch_order: Annotated[
        str,
        typer.Option(
            "--batch-order",
            help="Which buffered requests a freed instance takes: 'arrival' (default) or "
            "'deadline' (earliest SLO deadline first: tight apps overtake loose ones).",
        ),
    ] = "arrival",
    overload_share: Annotated[
        str,
        typer.Option(
            "--overload-share",
            help="How an overloaded group shares its capacity among its apps: 'first-come' "
            "(default: a request is admitted if it can meet its own SLO, so the loosest app "
            "fills the queue) or 'even' (also held to the tightest active app's SLO: every "
            "app admitted about as often).",
        ),
    ] = "first-come",
    standby: Annotated[
        int,
        typer.Option(
            help="Warm instances per group kept beside the serving ones, promoted at once on "
            "a scale-up (local backend with autoscaling; 0: none).",
        ),
    ] = 1,
) -> None:
    """Serve the apps over the Open Inference Protocol until Ctrl-C (then drain and stop)."""
    if backend not in ("local", "ray"):
        raise ConfigError(f"must be 'local' or 'ray', got {backend!r}", field="--backend")
    if not 0 <= port <= MAX_PORT:
        raise ConfigError(f"must be in 0..{MAX_PORT}, got {port}", field="--port")
    if not 1024 <= max_body <= 2**31:
        raise ConfigError(f"must be in 1024..{2**31}, got {max_body}", field="--max-body")
    cores = os.cpu_count() or 1
    if not 0 <= standby <= 64:
        raise ConfigError(f"must be in 0..64, got {standby}", field="--standby")
    for opt, v in (("--instances", instances), ("--max-instances", max_instances)):
        if v is not None and not 1 <= v <= 1024:
            raise ConfigError(f"must be in 1..1024, got {v}", field=opt)
    if window != 0 and not 1 <= window <= 86400:
        raise ConfigError(f"must be 0 or in 1..86400 seconds, got {window}", field="--window")
    one_of("--batch-order", batch_order, ORDERS)
    one_of("--overload-share", overload_share, SHARES)
    one_of("--rate-estimator", rate_estimator, ESTIMATORS)
    if not 0 <= rate_floor <= 1:  # also refuses nan
        raise ConfigError(f"must be in [0, 1], got {rate_floor}", field="--rate-floor")
    if plan_out is not None:
        check_output_file(plan_out, "--plan-out")
    err = Console(stderr=True, soft_wrap=True)

    def say(msg: str) -> None:
        err.print(Text(f"batchwise: {msg}"))

    prepared = prepare(apps_file, profile, algorithm, cpu_only, say)
    plan = prepared.plan
    if plan_out is not None:
        write_text(plan_out, json.dumps(plan.model_dump(mode="json"), indent=2) + "\n")
    options = ServeOptions(
        instances=instances, max_instances=max_instances, admission=admission,
        backend=backend, ray_address=ray_address, autoscale=autoscale,
        replan_window_s=window or None, rate_estimator=rate_estimator,
        rate_floor=rate_floor,
        planner=prepared.replanner(), harvest=harvest, surge=surge, batch_order=batch_order,
        overload_share=overload_share, standby=standby,
    )  # fmt: skip
    server = Server(plan, prepared.profile, prepared.prices, prepared.runner, options)
    if server.harvester is not None:
        say(f"harvest: low-priority cgroup {server.harvester.path} gets the CPU serving "
            f"leaves idle (of {server.harvester.capacity:g} vCPU); run batch jobs in it with "
            f"'batchwise batch JOB --cgroup {server.harvester.path}'")  # fmt: skip
    try:
        gateway = Gateway(server, host, port, token, max_body)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          field="--port") from None  # fmt: skip
    vcpu = sum(g.function.vcpu for g in plan.groups)
    say(f"{len(plan.groups)} group(s) for {sum(len(g.apps) for g in plan.groups)} app(s), "
        f"{vcpu:g} vCPU per instance set on {cores} cores; profile {prepared.profile_source}; "
        f"predicted cost {plan.expected_cost_per_request:.3g} {plan.currency}/request")  # fmt: skip
    say(f"starting instances; gateway at {gateway.url} (ready at {gateway.url}/v2/health/ready)")

    async def run() -> None:
        task = asyncio.ensure_future(gateway.serve())
        while not task.done():
            if server.ready():
                say(f"ready: {', '.join(server.apps[:8])}{' …' if len(server.apps) > 8 else ''}"
                    f" at {gateway.url}/v2/models/APP/infer")  # fmt: skip
                heap.settle()  # this process is the gateway now: start-up out of gc's walks
                break
            failure = gateway.start_error()
            if failure is not None:
                gateway.uvicorn.should_exit = True
                await task
                raise ConfigError(f"instances failed to start: {failure}")
            await asyncio.sleep(0.1)
        await task

    aio.run(run())
    sig = gateway.uvicorn.exit_signal
    say(f"stopped{f' on {signal.Signals(sig).name}' if sig else ''}: drained in-flight requests")
    sys.stdout.flush()
