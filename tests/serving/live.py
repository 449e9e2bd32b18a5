"""Helpers for live-serving tests: a sleep-model profile, plans and a gateway on a thread."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from batchwise.config.apps import AppSpec
from batchwise.config.prices import local_price_book
from batchwise.config.profiles import ModelProfile
from batchwise.planner import plan
from batchwise.serving.http_server import Gateway
from batchwise.serving.server import RunnerRef, ServeOptions, Server

BASE_S, PER_ITEM_S = 0.01, 0.002


def sleep_profile(base_s: float = BASE_S, per_item_s: float = PER_ITEM_S,
                  max_batch: int = 16) -> ModelProfile:  # fmt: skip
    """The exact latency of the ``sleep`` model (flat in vCPUs: alpha = 0)."""
    avg = [[0.0, 1.0, base_s + per_item_s * b] for b in range(1, max_batch + 1)]
    worst = [[0.0, 1.0, 1.3 * (base_s + per_item_s * b) + 0.005] for b in range(1, max_batch + 1)]
    return ModelProfile(name="sleep", cpu={"avg": avg, "max": worst, "memory_base_mb": 100})


def sleep_gateway(apps: Sequence[tuple[str, float, float]], options: ServeOptions | None = None,
                  token: str | None = None, max_body: int | None = None,
                  base_s: float = BASE_S, per_item_s: float = PER_ITEM_S,
                  replan_window_s: float | None = None) -> Gateway:  # fmt: skip
    """A gateway serving the planned ``(name, slo, rate)`` apps on the sleep model."""
    profile = sleep_profile(base_s, per_item_s)
    prices = local_price_book()
    specs = [AppSpec(name=n, slo=s, rate=r) for n, s, r in apps]
    p = plan(specs, profile, prices)
    server = Server(p, profile, prices,
                    RunnerRef("sleep", {"base_s": base_s, "per_item_s": per_item_s}),
                    options)  # fmt: skip
    if replan_window_s is not None:
        server.options = replace(server.options, replan_window_s=replan_window_s,
                                 planner=lambda a: plan(a, profile, prices))  # fmt: skip
    kwargs = {} if max_body is None else {"max_body": max_body}
    return Gateway(server, token=token, **kwargs)


def wait_all_warm(gateway: Gateway, timeout_s: float = 120.0) -> None:
    """Until every group has the instances it started with warm (ready means one each).

    For tests of steady-state SLOs: an instance still loading its model takes seconds of
    CPU from the warm ones on this 2-core machine, which is a start-up transient, not what
    such a test measures."""
    import time

    t_end = time.monotonic() + timeout_s
    pools = [g.pool for g in gateway.server.groups]
    while any(p.ready_count() < p.target for p in pools):
        assert time.monotonic() < t_end, [(p.name, p.ready_count(), p.target) for p in pools]
        time.sleep(0.05)


def run_load(url: str, *args: str) -> dict:
    """``batchwise load URL ARGS --json`` in its own process (no GIL shared with the gateway)."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "batchwise.cli", "load", url, *args, "--json"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def infer_body(n: int = 1, text: str = "x") -> bytes:
    import json

    return json.dumps({"inputs": [{"name": "input", "shape": [n], "datatype": "BYTES",
                                   "data": [text] * n}]}).encode()  # fmt: skip
