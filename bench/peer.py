"""Running the peer's scripts (``shared/peer``) and keeping their figures honest.

Shared by the benchmarks that compare against a peer (``serving.py``, ``batch_peer.py``):
each peer script runs through the harness's ``netns_run.sh`` (loopback-only network and PID
namespaces) under ``timeout`` on a quiet machine, prints one JSON line, and reports how
much CPU other processes took meanwhile (``contention.foreign_cpu_frac``); above
:data:`MAX_FOREIGN_CPU` a figure is unreliable, so the run is repeated once.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

MAX_FOREIGN_CPU = 0.05
"""Above this fraction of the machine used by other processes, a run is repeated once."""
PEER_ENV = {"HOME": "/tmp/anchors/home", "RAY_TMPDIR": "/tmp/anchors/ray", "HF_HUB_OFFLINE": "1",
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # fmt: skip
PEER_PYTHON = "/tmp/anchors/venv/bin/python"
"""The peer's venv, as ``shared/peer/README.md`` sets it up."""


def save(out: Path, name: str, doc: Any) -> None:
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")


def busy_cpu_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system


def wait_quiet(seconds: float = 3.0, max_busy: float = 0.1, wait_s: float = 60.0) -> float:
    """Wait (up to wait_s) until the machine is at most max_busy busy; the last busy fraction."""
    t_end = time.monotonic() + wait_s
    while True:
        b0 = busy_cpu_s()
        time.sleep(seconds)
        frac = (busy_cpu_s() - b0) / (seconds * (os.cpu_count() or 1))
        if frac <= max_busy or time.monotonic() >= t_end:
            return round(frac, 3)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Peer:
    """Runs one peer script inside its netns_run.sh under timeout; one JSON line back."""

    def __init__(self, peer_dir: Path, python: str, out: Path,
                 say: Callable[[str], None] = _stderr) -> None:  # fmt: skip
        self.dir, self.python, self.out, self.say = peer_dir, python, out, say

    def run(self, name: str, script: str, args: list[str], limit_s: int) -> dict[str, Any]:
        for attempt in (1, 2):
            quiet = wait_quiet()
            cmd = ["timeout", "-k", "15", str(limit_s), str(self.dir / "netns_run.sh"),
                   self.python, str(self.dir / script), *args]  # fmt: skip
            self.say(f"peer {name} (try {attempt}): {shlex.join(cmd[3:])}")
            t0 = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir,
                                  env={**os.environ, **PEER_ENV})  # fmt: skip
            log = proc.stdout + proc.stderr
            (self.out / f"{name}.log").write_text(log)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"peer {name} failed (rc {proc.returncode}): {log[-2000:]}")
            doc = json.loads(lines[-1])
            doc["bench"] = {"command": shlex.join(cmd), "wall_s": round(time.monotonic() - t0, 1),
                            "quiet_busy_frac": quiet, "attempt": attempt}  # fmt: skip
            save(self.out, name, doc)
            foreign = doc.get("contention", {}).get("foreign_cpu_frac", 0.0)
            if foreign <= MAX_FOREIGN_CPU:
                return doc
            self.say(f"peer {name}: foreign_cpu_frac {foreign} > {MAX_FOREIGN_CPU}, running again")
        return doc
