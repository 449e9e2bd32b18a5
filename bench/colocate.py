"""Serving and a batch job on the same 2 cores: static split, uncontrolled, the controller.

Usage: python bench/colocate.py [--json] [--loads 1,5] [--duration 45] [--out DIR]
                               [--ways static,uncontrolled,controller]

Per load k (the 4-app MiniLM mix, ``examples/minilm-4apps.yaml``, ``batchwise load
--rate-scale k``), one run at a time on a fresh ``batchwise serve``:

* ``alone``        — serving only: its SLO attainment and the CPU it leaves idle;
* ``static``       — plus a MiniLM batch job pinned to one core (``taskset -c 1``);
* ``uncontrolled`` — plus the same job with no limit at all;
* ``controller``   — ``serve --harvest`` plus the job in its low-priority cgroup
  (``batchwise batch JOB --cgroup PATH``): Dilu's vertical controller on cgroup quotas.

The batch job (encoder only, 40 000 sentences, shards of 100, two one-thread workers)
starts after serving is ready and runs through the whole load; its throughput is the
records it commits during the load window (journal, ``batchwise batch status``) and
the CPU its process tree used then. ``harvest`` = the job's CPU ÷ the CPU that serving
alone left idle at that load (goal ≥ 0.7, with serving ≥ 99 % within its SLO). Idle CPU
is the machine's (``/proc/stat``) over the load window.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))

from serving import APPS_FILE, BW, ROOT, get_json, load, rnd, save, say, tree_cpu_s, wait_quiet
from serving import serving as serve_ctx

SENTENCES = ROOT / "examples" / "batch" / "sentences.jsonl"
RECORDS = 40_000
WAYS = ("alone", "static", "uncontrolled", "controller")


def write_job(out: Path) -> Path:
    """The batch job's input (the example sentences, repeated with new ids) and file."""
    rows = [json.loads(x) for x in SENTENCES.read_text().splitlines() if x.strip()]
    with (out / "job-in.jsonl").open("w") as f:
        for i in range(RECORDS):
            f.write(json.dumps({**rows[i % len(rows)], "id": i}) + "\n")
    job = out / "job.yaml"
    job.write_text(
        "input: {kind: jsonl, path: job-in.jsonl}\n"
        "pipeline:\n  models:\n"
        "    - {name: encoder, model: minilm, batch_size: 32, options: {field: text}}\n"
        "output: {path: job-out, format: parquet}\n"
        "shards: {records: 100}\n"
        "workers: {min: 2, max: 2, cpus: 1}\n"
    )
    return job


def job_records(out: Path) -> int:
    proc = subprocess.run([*BW, "batch", "status", str(out / "job-out"), "--json"],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    with contextlib.suppress(ValueError, KeyError):
        return int(json.loads(proc.stdout)["records"])
    return 0


def idle_s() -> float:
    t = psutil.cpu_times()
    return t.idle + getattr(t, "iowait", 0.0)


@contextlib.contextmanager
def batch_job(job: Path, out: Path, way: str, cgroup: str | None, env: dict[str, str]):
    """The batch job, started fresh and warmed (first shard committed), stopped after."""
    cmd = [*BW, "batch", str(job), "--fresh", "--json"]
    if way == "static":
        cmd = ["taskset", "-c", "1", *cmd]
    if cgroup is not None:
        cmd += ["--cgroup", cgroup]
    log = (out / f"job-{way}.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    t_end = time.monotonic() + 120
    while job_records(out) == 0 and time.monotonic() < t_end and proc.poll() is None:
        time.sleep(1.0)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def one(way: str, k: float, args: argparse.Namespace, job: Path, env: dict[str, str]) -> dict:
    name = f"{way}-{k:g}x"
    wait_quiet()
    say(f"colocate {name}")
    extra = ("--harvest",) if way == "controller" else ()
    with serve_ctx(APPS_FILE, name, args.out, env, extra) as info:
        cgroup = None
        if way == "controller":
            cgroup = get_json(f"http://127.0.0.1:{info['port']}/v1/stats")["harvest"]["cgroup"]
        ctx = batch_job(job, args.out, way, cgroup, env) if way != "alone" else None
        with ctx if ctx is not None else contextlib.nullcontext() as proc:
            rec0, idle0, t0 = job_records(args.out), idle_s(), time.monotonic()
            cpu0 = tree_cpu_s(proc.pid) if proc is not None else 0.0
            rep = load(info, name, args.out, env, args.duration, k, [])
            wall = time.monotonic() - t0
            rec1, idle1 = job_records(args.out), idle_s()
            cpu1 = tree_cpu_s(proc.pid) if proc is not None else 0.0
            harvest = None
            if way == "controller":
                harvest = get_json(f"http://127.0.0.1:{info['port']}/v1/stats")["harvest"]
                harvest.pop("instances", None)
    cores = os.cpu_count() or 1
    row = {
        "way": way, "load": k, "wall_s": round(wall, 1),
        "slo_attainment": rep["slo_attainment"], "admitted_fraction": rep["admitted_fraction"],
        "p99_s": rnd(rep["p99_s"]), "requests": rep["requests"],
        "idle_frac": rnd((idle1 - idle0) / (wall * cores), 3),
        "batch_records_per_s": rnd((rec1 - rec0) / wall, 1) if way != "alone" else None,
        "batch_cpu_s": rnd(cpu1 - cpu0, 1) if way != "alone" else None,
        "serve_cpu_s": rep["bench"]["serve_tree_cpu_s"],
        "harvest": harvest,
    }  # fmt: skip
    save(args.out, f"colocate-{name}", row)
    say(f"  {name}: SLO {row['slo_attainment']}, admitted {row['admitted_fraction']}, "
        f"idle {row['idle_frac']}, batch {row['batch_records_per_s']} rec/s")  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--loads", default="1,5")
    ap.add_argument("--duration", type=float, default=45.0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bw-colocate"))
    ap.add_argument("--ways", default=",".join(WAYS[1:]), help="besides 'alone', always run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    job = write_job(args.out)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rows: list[dict[str, Any]] = []
    for k in (float(x) for x in args.loads.split(",")):
        alone = one("alone", k, args, job, env)
        rows.append(alone)
        idle_cpu_s = alone["idle_frac"] * alone["wall_s"] * (os.cpu_count() or 1)
        for way in (w for w in WAYS[1:] if w in args.ways.split(",")):
            row = one(way, k, args, job, env)
            row["harvest_ratio"] = rnd(row["batch_cpu_s"] / idle_cpu_s, 3) if idle_cpu_s else None
            rows.append(row)
    if args.json:
        print(json.dumps({"duration_s": args.duration, "rows": rows}, indent=2))
        return
    print("| load | way | SLO (admitted) | admitted | p99 s | idle CPU | batch rec/s | "
          "batch CPU s | harvest |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for r in rows:
        print(f"| {r['load']:g}× | {r['way']} | {r['slo_attainment']} | {r['admitted_fraction']} "
              f"| {r['p99_s']} | {r['idle_frac']} | {r['batch_records_per_s']} | "
              f"{r['batch_cpu_s']} | {r.get('harvest_ratio')} |")  # fmt: skip


if __name__ == "__main__":
    main()
