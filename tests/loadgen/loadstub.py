"""A stand-in gateway for load-generator tests: the same endpoints, a chosen behaviour.

:func:`stub_gateway` runs this file as a script, in its own process (so it does not
compete with the load generator's event loop for the GIL): it binds 127.0.0.1 on a
free port and prints ``PORT <n>`` once it listens. ``--delay S``: each infer answer takes S seconds;
``--serial``: answers one infer at a time (a stalled server: a queue forms);
``--not-ready``: /v2/health/ready answers 503.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

APP, SLO_S, COST = "x", 1.0, 1e-6


def make_app(delay_s: float, serial: bool, ready: bool, rate: float) -> web.Application:
    lock = asyncio.Lock()
    state = {"answered": 0}

    async def health(_r: web.Request) -> web.Response:
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def plan(_r: web.Request) -> web.Response:
        groups = [{"apps": [APP], "rates": {APP: rate}, "slos": {APP: SLO_S}}]
        return web.json_response({
            "epoch": 1,
            "plan": {"currency": "USD", "expected_cost_per_request": COST, "groups": groups},
            "groups": [{"group": "g0", "apps": [APP], "instances": 1, "ready": 1}],
            "history": [],
        })  # fmt: skip

    async def stats(_r: web.Request) -> web.Response:
        n = state["answered"]
        return web.json_response({
            "epoch": 1, "currency": "USD", "cpu_s": 0.001 * n,
            "groups": {"g0": {"busy_s": 0.0, "cost": COST * n, "batches": n, "instances": 1,
                              "deaths": 0}},
            "apps": {}, "predicted_cost_per_request": COST,
        })  # fmt: skip

    async def meta(r: web.Request) -> web.Response:
        if r.match_info["name"] != APP:
            return web.json_response({"error": "unknown model"}, status=404)
        spec = [{"name": "input", "datatype": "BYTES", "shape": [-1]}]
        return web.json_response({"name": APP, "inputs": spec, "outputs": spec})

    async def infer(r: web.Request) -> web.Response:
        body = await r.read()
        if serial:
            async with lock:
                await asyncio.sleep(delay_s)
        elif delay_s:
            await asyncio.sleep(delay_s)
        state["answered"] += 1
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/health/ready", health)
    app.router.add_get("/v1/plan", plan)
    app.router.add_get("/v1/stats", stats)
    app.router.add_get("/v2/models/{name}", meta)
    app.router.add_post("/v2/models/{name}/infer", infer)
    return app


async def serve(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    runner = web.AppRunner(make_app(args.delay, args.serial, not args.not_ready, args.rate),
                           access_log=None)  # fmt: skip
    await runner.setup()
    await web.SockSite(runner, sock, backlog=2048).start()
    sys.stdout.write(f"PORT {sock.getsockname()[1]}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


@contextmanager
def stub_gateway(*args: str) -> Iterator[str]:
    """This stub in its own process with ``args``; yields its base URL, stops it afterwards."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("PORT "), f"the stub gateway did not start: {line!r}"
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--serial", action="store_true")
    p.add_argument("--not-ready", action="store_true")
    p.add_argument("--rate", type=float, default=10.0)
    asyncio.run(serve(p.parse_args()))
