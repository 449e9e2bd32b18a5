"""Workers that die, with real processes: records that kill them, models that cannot start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jobfiles import write_job

from batchwise.batch.master import Master

BATCHWISE = Path(sys.executable).with_name("batchwise")


def outputs(out_dir: Path) -> dict[str, int]:
    rows = [json.loads(line) for p in sorted(out_dir.glob("part-*.jsonl"))
            for line in p.read_text().splitlines()]  # fmt: skip
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "a record was committed twice"
    return {r["id"]: r["output"] for r in rows}


def test_records_that_kill_their_worker_are_quarantined_and_their_shard_mates_commit(tmp_path):
    # v=23 (row 24, shard 3) exits the worker process; v=47 (row 48, shard 5) SIGKILLs it.
    job = write_job(tmp_path, 60, "bw_test_models:KillOn",
                    "shards: {records: 10}\nworkers: {count: 2}\nmax_attempts: 2\n")  # fmt: skip
    job.write_text(job.read_text().replace("batch_size: 5}", "batch_size: 5, "
                                           "options: {exit: [23], kill: [47]}}"))  # fmt: skip
    report = Master(job).run()
    # Every shard commits, prefetched neighbours of the dying shards included ...
    assert report["shards"] == {"todo": 0, "leased": 0, "committed": 6, "quarantined": 0}
    assert report["records"] == 58 and report["worker_restarts"] >= 3
    # ... and exactly the two killers are quarantined, each named with how it killed.
    bad = {r["record"]: r["error"] for r in report["quarantined_records"]}
    assert sorted(bad) == ["in.jsonl:24", "in.jsonl:48"]
    assert bad["in.jsonl:24"] == (
        "worker: died 3 times computing this record alone (last: exit status 70)"
    )
    assert bad["in.jsonl:48"].endswith("(last: killed by SIGKILL)")
    got = outputs(Path(report["output"]))
    assert got == {f"in.jsonl:{i + 1}": 2 * i for i in range(60) if i not in (23, 47)}


def test_a_model_constructor_that_raises_stops_the_job_with_exit_2(tmp_path):
    job = write_job(tmp_path, 20, "bw_test_models:BrokenInit", "workers: {count: 2}\n")
    r = subprocess.run([str(BATCHWISE), "batch", str(job)], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "a worker could not start" in r.stderr
    why = "model 'bw_test_models:BrokenInit' failed to start: RuntimeError: cannot load weights"
    assert why in r.stderr
    status = subprocess.run([str(BATCHWISE), "batch", "status", str(tmp_path / "out"), "--json"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert status.returncode == 2
    report = json.loads(status.stdout)
    assert report["state"] == "failed" and "cannot load weights" in report["reason"]
    assert report["shards"]["leased"] == 0  # nothing left held by the stopped job
