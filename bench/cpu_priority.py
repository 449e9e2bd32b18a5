"""What the CPU priorities buy: a busy loop's slowdown beside two busy processes, per set-up.

The loop stands for the gateway (or any process serving needs): it is timed alone, then
beside two one-thread spinners that together could hold every core of a 2-core machine,
with the spinners placed as batchwise places them:

* ``plain``     — the spinners as ordinary processes (no cgroup): the reference, ~1.5x;
* ``equal``     — this process in the gateway's cgroup, the spinners in instance
  cgroups at the gateway's weight (what the gateway would get without outweighing them);
* ``gateway``   — as ``serve`` runs: the gateway cgroup at the default weight, each
  instance's at ``YIELD_SHARES`` (``cpu_quota.join_gateway``);
* ``harvest``   — the spinners in the top-level harvest group in the idle class (what a
  batch job gets under ``serve --harvest``), this process outside any batchwise group.

Why a bench and not a unit test: one core's speed on this VM varies by ±40 % between
0.1 s samples (steal, host neighbours), so single timings are noise; each figure here is
the median over ``--repeats`` of (min of 5 loaded) / (min of 5 alone), set-ups
interleaved per repeat. Needs cgroup v1 writable (root): exit 2 otherwise. Usage::

    .venv/bin/python bench/cpu_priority.py --repeats 7 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from batchwise.resources.cpu_quota import (
    CGROUP_V1,
    CpuQuota,
    detect,
    join_gateway,
    leave_gateway,
)

SETUPS = ("plain", "equal", "gateway", "harvest")
DEFAULT_SHARES = "1024"


def spin_s(n: int = 3_000_000) -> float:
    t = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - t


def best_of(k: int = 5) -> float:
    return min(spin_s() for _ in range(k))


def loaded(place: Callable[[list[int]], None]) -> float:
    """Min of 5 timings with two spinners running, placed by ``place(pids)``."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        place([p.pid for p in spinners])
        time.sleep(0.5)  # their interpreters start up first
        return best_of()
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def one(setup: str) -> float:
    """Loaded / alone for one set-up (both timed in the same cgroup arrangement)."""
    gw = join_gateway() if setup in ("equal", "gateway") else None
    quotas: list[CpuQuota] = []
    try:
        if setup in ("equal", "gateway"):
            quotas = [CpuQuota.create(f"bench-prio-{i}", 1.0) for i in range(2)]
            if setup == "equal":
                for q in quotas:
                    (q.path / "cpu.shares").write_text(DEFAULT_SHARES)
        elif setup == "harvest":
            quotas = [CpuQuota.create("bench-prio-harvest", 2.0, top_level=True)]
            quotas[0].set_low_priority()
        alone = best_of()

        def place(pids: list[int]) -> None:
            for i, pid in enumerate(pids):
                if quotas:
                    quotas[i % len(quotas)].enter(pid)

        return loaded(place) / alone
    finally:
        for q in quotas:
            q.remove()
        leave_gateway(gw)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=7, help="rounds over every set-up")
    ap.add_argument("--json", action="store_true", help="print only the summary JSON")
    args = ap.parse_args()
    if not 1 <= args.repeats <= 100:
        ap.error(f"--repeats: must be in 1..100, got {args.repeats}")
    if detect() != CGROUP_V1:
        print(f"cpu_priority: needs a writable cgroup v1 (/sys/fs/cgroup/cpu, as root); this "
              f"process has {detect()}", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    runs: dict[str, list[float]] = {s: [] for s in SETUPS}
    for r in range(args.repeats):
        for s in SETUPS:
            runs[s].append(round(one(s), 3))
        print(
            f"[cpu_priority] round {r + 1}/{args.repeats}: "
            + ", ".join(f"{s} {runs[s][-1]:.2f}x" for s in SETUPS),
            file=sys.stderr,
        )
    out: dict[str, Any] = {
        "repeats": args.repeats,
        "slowdown_median": {s: round(statistics.median(v), 3) for s, v in runs.items()},
        "slowdown_runs": runs,
    }
    if not args.json:
        for s in SETUPS:
            print(
                f"{s:8s} median {out['slowdown_median'][s]:.2f}x  runs {runs[s]}", file=sys.stderr
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
