"""The kill storm: >= 20 kill -9 trials of workers, and of the master, in one job."""

from __future__ import annotations

import random
import signal
import time

import pytest
from jobfiles import write_job

from batchwise.batch.master import Master

pytestmark = [pytest.mark.storm, pytest.mark.slow]

N = 800


def test_kill_storm_every_record_exactly_once(tmp_path):
    settings = "shards: {records: 10}\nworkers: {count: 3}\nlease_s: 2\n"
    job = write_job(tmp_path, N, "bw_test_models:SlowDouble", settings, fmt="parquet")
    rng = random.Random(11)
    worker_kills = master_kills = 0
    master = Master(job)
    deadline = time.monotonic() + 240
    last = time.monotonic()
    while not master.step():
        assert time.monotonic() < deadline, "storm job did not finish"
        if time.monotonic() - last > 0.3 and master.procs:
            if worker_kills and worker_kills % 8 == 0 and master_kills < 2:
                master.kill()  # the master dies with all its workers: restart from the journal
                master = Master(job)
                master_kills += 1
            else:
                rng.choice(list(master.procs.values())).send_signal(signal.SIGKILL)
            worker_kills += 1
            last = time.monotonic()
        time.sleep(0.05)
    from batchwise.batch.sinks import read_part

    rows = [r for p in sorted(master.out_dir.glob("part-*.parquet")) for r in read_part(p)]
    ids = [r["id"] for r in rows]
    assert worker_kills >= 20 and master_kills == 2
    report = master.report()
    lost = sorted({f"in.jsonl:{i}" for i in range(1, N + 1)} - set(ids))
    assert len(ids) == len(set(ids)) == N, (lost, report["quarantined_records"],
                                             report["quarantined"])  # fmt: skip
    assert all(r["output"] == 2 * (int(r["id"].split(":")[1]) - 1) for r in rows)  # v = row - 1
    assert report["shards"]["committed"] == N // 10
