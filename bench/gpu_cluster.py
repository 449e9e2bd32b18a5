"""GPU placement (Dilu): every scheduler on every shipped workload and larger resampled ones.

Usage: python bench/gpu_cluster.py [--json] [--sizes 1600,3200] [--seed 0]
                                   [--workload PATH ...]

Workloads: the four shipped ``../shared/data/dilu/workloads/instances-*.txt``, then one
per ``--sizes`` entry, resampled from them: instances drawn with replacement (seeded)
from all four files together, each keeping its own lifetime (start → delete, or never
deleted), started one per second as in the shipped files — so a 3200-instance
workload runs four times as long as the 800 one and its live set grows the same
way. ``--workload`` adds more files. Every replay checks every invariant at every
event (a violation aborts the run). ``repack/limit-check`` is ours with Dilu's
stricter split check (room for the full limit), to show what that choice is worth.
Wall time is the replay alone (the file is parsed once per workload).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from batchwise.clock import Stopwatch
from batchwise.gpu.placement import PlacementPolicy, SchedulerName, make_policy
from batchwise.gpu.workload import Workload, load_workload
from batchwise.sim.gpu_cluster import exclusive_peak, simulate
from common import markdown

SHIPPED = Path(__file__).resolve().parents[2] / "shared" / "data" / "dilu" / "workloads"
"""The authors' workloads (benchmarks may read ``../shared``; tests use copies)."""
SHIPPED_SIZES = (100, 200, 400, 800)
DEFAULT_SIZES = (1600, 3200)
"""Resampled workload sizes (instances)."""
START_GAP_S = 1
"""Seconds between starts in a resampled workload: the shipped files start one per second."""
BASE_TIME = datetime(2024, 6, 19, 15, 0, 0)
"""First start of a resampled workload (only differences matter)."""


def _pool(paths: list[Path]) -> list[tuple[dict[str, Any], float | None]]:
    """Every started instance of ``paths`` with its lifetime in seconds (None: never deleted)."""
    pool = []
    for path in paths:
        starts: dict[str, tuple[dict[str, Any], datetime]] = {}
        lifetimes: dict[str, float] = {}
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            rec = ast.literal_eval(line)
            t = datetime.fromisoformat(rec["Time"])
            name = rec["Instance"]["service_name"]
            if rec["Action"] == "start":
                starts[name] = (rec["Instance"], t)
            else:
                lifetimes[name] = (t - starts[name][1]).total_seconds()
        pool += [(inst, lifetimes.get(name)) for name, (inst, _) in starts.items()]
    return pool


def resample(paths: list[Path], n: int, seed: int) -> str:
    """A workload file's text: ``n`` instances drawn from ``paths``, one start per second."""
    pool = _pool(paths)
    rng = np.random.default_rng(seed)
    events: list[tuple[float, int, dict[str, Any]]] = []
    for i, k in enumerate(rng.integers(0, len(pool), size=n)):
        inst, life = pool[int(k)]
        inst = {**inst, "service_name": f"{inst['type']}-s{seed}-{i:05d}"}
        start = float(i * START_GAP_S)
        events.append((start, 1, {"Action": "start", "Instance": inst}))
        if life is not None:
            events.append((start + life, 0, {"Action": "delete", "Instance": inst}))
    events.sort(key=lambda e: (e[0], e[1]))  # at one second: deletes, then starts
    lines = []
    for t, _, rec in events:
        when = (BASE_TIME + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(repr({"Time": when, **rec}))
    return "\n".join(lines) + "\n"


def _policies() -> list[tuple[str, PlacementPolicy]]:
    out = [(s.value, make_policy(s)) for s in SchedulerName]
    out.append(("repack/limit-check", make_policy(SchedulerName.REPACK, split_check="limit")))
    return out


def run_one(workload: Workload) -> dict[str, dict[str, Any]]:
    ex = exclusive_peak(workload)
    rows: dict[str, dict[str, Any]] = {}
    for label, policy in _policies():
        watch = Stopwatch()
        result = simulate(workload, policy)
        row = result.to_dict(exclusive_peak=ex)
        row["wall_s"] = round(watch.elapsed_s(), 3)
        rows[label] = row
        print(f"  {Path(workload.source).name} {label}: {row['peak_gpus']} GPUs, "
              f"{row['wall_s']:.2f} s", file=sys.stderr)  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                    help="resampled workload sizes, comma-separated ('' for none)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workload", action="append", type=Path, default=[])
    args = ap.parse_args()
    shipped = [SHIPPED / f"instances-{n}.txt" for n in SHIPPED_SIZES]
    workloads = [load_workload(p) for p in shipped + args.workload]
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.sizes.split(",") if x):
            path = Path(tmp) / f"resampled-{n}-seed{args.seed}.txt"
            path.write_text(resample(shipped, n, args.seed))
            workloads.append(load_workload(path))
    results = {Path(w.source).name: {"instances": w.n_instances, "events": len(w.events),
                                     "exclusive_peak": exclusive_peak(w),
                                     "schedulers": run_one(w)}
               for w in workloads}  # fmt: skip
    if args.json:
        print(json.dumps({"seed": args.seed, "workloads": results}, indent=2))
        return
    print(markdown(*_table(results)))


def _table(results: dict[str, Any]) -> tuple[list[str], list[list[object]]]:
    headers = ["workload", "scheduler", "peak GPUs", "÷ Exclusive", "SM frag", "mem frag",
               "moves", "wall s"]  # fmt: skip
    rows: list[list[object]] = []
    for name, w in results.items():
        for label, r in w["schedulers"].items():
            rows.append([name, label, r["peak_gpus"], f"{r['ratio_to_exclusive']:.3f}",
                         f"{r['sm_fragmentation']:.3f}", f"{r['memory_fragmentation']:.3f}",
                         r["moves"], f"{r['wall_s']:.2f}"])  # fmt: skip
    return headers, rows


if __name__ == "__main__":
    main()
