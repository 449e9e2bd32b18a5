"""The live part of ``make demo``: serve four apps on MiniLM, load them, report.

The apps are the peer benchmark's (SLOs 0.2/0.4/0.7/1.0 s at 2/4/6/8 req/s). The
gateway runs on a thread of this process; the load comes from ``batchwise load`` in
its own process (its CPU is not the server's), over loopback, for ``seconds``.
MiniLM is profiled on first use (about a minute here) and cached.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from batchwise.outputs import write_text
from batchwise.serving.http_server import Gateway
from batchwise.serving.server import ServeOptions, Server
from batchwise.serving.setup import prepare

LIVE_APPS = """\
# The live demo's apps (written by `batchwise demo`; serve them yourself with
#   batchwise serve THIS_FILE   and   batchwise load http://127.0.0.1:8000 ...)
model: minilm
apps:
  - {name: chat, slo: 0.2, rate: 2}
  - {name: search, slo: 0.4, rate: 4}
  - {name: tagging, slo: 0.7, rate: 6}
  - {name: digest, slo: 1.0, rate: 8}
"""


def run_live(out: Path, seconds: float, rate_scale: float, say: Any) -> dict[str, Any]:
    """Serve, load for ``seconds`` at ``rate_scale`` x the planned rates; the load report."""
    apps = out / "live-apps.yaml"
    write_text(apps, LIVE_APPS)
    prepared = prepare(str(apps), progress=lambda m: say(f"  {m}"))
    server = Server(prepared.plan, prepared.profile, prepared.prices, prepared.runner,
                    ServeOptions(planner=prepared.replanner()))  # fmt: skip
    with Gateway(server) as gw:
        say(f"  serving {', '.join(server.apps)} at {gw.url} (OIP: /v2/models/APP/infer); "
            f"loading {seconds:.0f} s at {rate_scale:g}x the planned rates")  # fmt: skip
        png = out / "live-timeline.png"
        cmd = [sys.executable, "-m", "batchwise.cli", "load", gw.url, "--duration", str(seconds),
               "--rate-scale", str(rate_scale), "--window", str(max(1, round(seconds / 12))),
               "--plot", str(png), "--json"]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 600)
        if res.returncode != 0:
            raise RuntimeError(f"load failed: {res.stderr.strip()[-500:]}")
        report = json.loads(res.stdout)
        report["plan"] = server.plan_doc()
    write_text(out / "live-report.json", json.dumps(report, indent=2) + "\n")
    return report
