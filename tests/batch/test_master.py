"""Local backend end to end: real worker processes, SIGKILLs, exactly-once output."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

from jobfiles import write_job

from batchwise.batch.master import Master

N = 300


def make_job(tmp_path: Path, model: str, workers: int = 2, records: int = 10) -> Path:
    settings = f"shards: {{records: {records}}}\nworkers: {{count: {workers}}}\nlease_s: 3\n"
    return write_job(tmp_path, N, model, settings)


def outputs(out_dir: Path) -> list[dict]:
    rows = []
    for part in sorted(out_dir.glob("part-*.jsonl")):
        rows.extend(json.loads(line) for line in part.read_text().splitlines())
    return rows


def test_job_survives_random_kill9_of_workers_exactly_once(tmp_path):
    master = Master(make_job(tmp_path, "bw_test_models:SlowDouble"))
    rng = random.Random(7)
    kills, last_kill = 0, time.monotonic()
    deadline = time.monotonic() + 120
    while not master.step():
        assert time.monotonic() < deadline, "job did not finish"
        if master.procs and time.monotonic() - last_kill > 0.5 and kills < 5:
            victim = rng.choice(list(master.procs.values()))
            victim.send_signal(signal.SIGKILL)
            kills += 1
            last_kill = time.monotonic()
        time.sleep(0.05)
    report = master.report()
    assert kills >= 3 and report["worker_restarts"] >= 1
    assert report["shards"]["committed"] == N // 10
    rows = outputs(master.out_dir)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == N  # every record exactly once
    assert all(r["output"] == 2 * int(r["id"].split(":")[1]) for r in rows)
    assert not list(master.out_dir.glob(".part-*.tmp"))  # no litter left behind


def test_poisoned_record_is_isolated_and_the_rest_of_its_shard_commits(tmp_path):
    master = Master(make_job(tmp_path, "bw_test_models:PoisonOnSeven", workers=1))
    report = master.run()
    assert report["shards"]["committed"] == N // 10
    (bad,) = report["quarantined_records"]
    assert bad["record"] == "in.jsonl:7" and "v=7" in bad["error"]
    ids = sorted(int(r["id"].split(":")[1]) for r in outputs(master.out_dir))
    assert ids == [i for i in range(N) if i != 7]


def test_master_restart_resumes_from_the_journal(tmp_path):
    job = make_job(tmp_path, "bw_test_models:SlowDouble", workers=1)
    first = Master(job)
    while first.report()["shards"]["committed"] < 5:
        first.step()
        time.sleep(0.05)
    first.kill()  # the master "dies" with its workers
    for p in first.procs.values():
        p.wait()
    second = Master(job)  # same command again
    report = second.run()
    assert report["shards"]["committed"] == N // 10
    ids = [r["id"] for r in outputs(second.out_dir)]
    assert len(ids) == len(set(ids)) == N
