"""Local backend end to end: real worker processes, SIGKILLs, exactly-once output."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from jobfiles import write_job

from batchwise.batch.backends import WorkerExit
from batchwise.batch.errors import JobStartError, WorkerCrashed
from batchwise.batch.master import Master
from batchwise.batch.progress import job_status
from batchwise.errors import BatchwiseError, ConfigError

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
    assert all(r["output"] == 2 * (int(r["id"].split(":")[1]) - 1) for r in rows)  # v = row - 1
    assert not list(master.out_dir.glob(".part-*.tmp"))  # no litter left behind


def test_poisoned_record_is_isolated_and_the_rest_of_its_shard_commits(tmp_path):
    master = Master(make_job(tmp_path, "bw_test_models:PoisonOnSeven", workers=1))
    report = master.run()
    assert report["shards"]["committed"] == N // 10
    (bad,) = report["quarantined_records"]
    assert bad["record"] == "in.jsonl:8" and "v=7" in bad["error"]  # the 8th row holds v=7
    ids = sorted(int(r["id"].split(":")[1]) for r in outputs(master.out_dir))
    assert ids == [i for i in range(1, N + 1) if i != 8]


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


class ScriptedBackend:
    """No processes: owners appear on spawn, and end as the test says."""

    def __init__(self) -> None:
        self.alive: list[str] = []
        self.ending: list[WorkerExit] = []
        self.killed = False

    def spawn(self, owner: str) -> None:
        self.alive.append(owner)

    def reap(self) -> list[WorkerExit]:
        ended, self.ending = self.ending, []
        self.alive = [o for o in self.alive if o not in {e.owner for e in ended}]
        return ended

    def drain(self, owner: str) -> None:
        pass

    def owners(self) -> list[str]:
        return list(self.alive)

    def free_cpus(self) -> float:
        return 8.0

    def kill_all(self) -> None:
        self.killed, self.alive = True, []

    def close(self) -> None:
        pass


def test_polling_reads_the_journal_through_one_connection_and_writes_nothing(tmp_path):
    backend = ScriptedBackend()
    master = Master(make_job(tmp_path, "bw_test_models:SlowDouble"), backend=backend)
    master.step()
    table, writes = master.table, master.table._db.total_changes
    for _ in range(20):
        master.step()
    assert master.table is table and table._db.total_changes == writes
    assert len(backend.alive) == 2 and master.progress[0]["todo"] == N // 10


@pytest.mark.parametrize(
    ("end", "error"),
    [(WorkerExit("?", fatal="pipeline.models[m]: boom"), JobStartError),
     (WorkerExit("?", crash="worker w: _read_loop: KeyError: 1"), WorkerCrashed),
     (WorkerExit("?", died="killed by SIGSEGV", started=False), JobStartError)],
)  # fmt: skip
def test_workers_that_cannot_start_or_crash_stop_the_job(tmp_path, end, error):
    backend = ScriptedBackend()
    master = Master(make_job(tmp_path, "bw_test_models:SlowDouble"), backend=backend)
    deaths = 3 if end.died else 1  # dying while starting: three times in a row
    with pytest.raises(error):
        master.run(on_tick=lambda m: backend.ending.append(
            WorkerExit(backend.alive[0], end.fatal, end.crash, end.died, end.started)
        ) if len(backend.ending) < deaths else None)  # fmt: skip
    assert backend.killed  # the other workers were stopped with the job
    master.close()
    status = job_status(master.out_dir)
    assert status["state"] == "failed" and status["shards"]["leased"] == 0


def test_a_resumed_job_that_cannot_start_is_recorded_as_failed(tmp_path):
    job = make_job(tmp_path, "bw_test_models:SlowDouble")
    Master(job, backend=ScriptedBackend()).close()  # a run that made the journal
    good = job.read_text()
    job.write_text(good.replace("bw_test_models:SlowDouble", "bw_test_models:Gone"))
    with pytest.raises(ConfigError, match=r"job\.yaml:2: pipeline\.models\[m\]\.model: cannot"):
        Master(job, backend=ScriptedBackend())
    status = job_status(tmp_path / "out")
    assert status["state"] == "failed" and "bw_test_models:Gone" in status["reason"]
    job.write_text(good)  # fixed: the same job resumes
    again = Master(job, backend=ScriptedBackend())
    assert again.prepared.shards_added == 0 and again.report()["runs"] == 3
    again.close()


def test_one_master_per_output_directory(tmp_path):
    job = make_job(tmp_path, "bw_test_models:SlowDouble")
    first = Master(job, backend=ScriptedBackend())
    with pytest.raises(BatchwiseError, match=rf"another batchwise master \(pid {os.getpid()}\)"):
        Master(job, backend=ScriptedBackend())
    assert job_status(first.out_dir)["state"] == "running"
    first.close()  # released (the kernel releases it too when a master dies)
    Master(job, backend=ScriptedBackend()).close()
