"""A master killed or stopped by a signal: its workers never outlive it, a restart resumes.

Real processes: the master runs in a child process (the CLI where its message and
exit status are checked), workers are found by their command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from jobfiles import write_job

from batchwise.batch.errors import JournalError
from batchwise.batch.progress import job_status
from batchwise.batch.shards import ShardTable

BATCHWISE = Path(sys.executable).with_name("batchwise")
RUNNER = "import sys, pathlib; from batchwise.batch.progress import run_job; " \
         "run_job(pathlib.Path(sys.argv[1]), None)"  # fmt: skip
N = 160


def make_job(tmp_path: Path, model: str = "bw_test_models:SlowDouble") -> Path:
    return write_job(tmp_path, N, model,
                     "shards: {records: 10}\nworkers: {count: 2}\nlease_s: 30\n")  # fmt: skip


def workers_of(journal: Path) -> list[psutil.Process]:
    """Live worker processes of this job (whoever their parent is now)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if p.info["status"] != psutil.STATUS_ZOMBIE and "batchwise.batch.worker" in cmd \
                and str(journal) in cmd:  # fmt: skip
            found.append(p)
    return found


def wait_for(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def committed(journal: Path) -> int:
    try:
        table = ShardTable(journal, create=False)
    except JournalError:  # not there yet, or the master is making it right now
        return 0
    try:
        return table.counts()["committed"]
    finally:
        table.close()


def started(cmd: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for p in out.glob("part-*.jsonl")
            for line in p.read_text().splitlines()]  # fmt: skip


def test_after_a_master_sigkill_its_workers_die_and_the_restart_runs_count_workers(tmp_path):
    job = make_job(tmp_path, "bw_test_models:SlowShard")  # 0.4 s per shard, 16 shards
    job.write_text(job.read_text().replace("batch_size: 5}", "batch_size: 5, "
                                           "options: {seconds: 0.2}}"))  # fmt: skip
    journal = tmp_path / "out" / "_journal.db"
    first = started([sys.executable, "-c", RUNNER, str(job)])
    wait_for(lambda: committed(journal) >= 2 and len(workers_of(journal)) == 2)
    orphans = workers_of(journal)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    _, alive = psutil.wait_procs(orphans, timeout=2)
    assert not alive, "workers outlived their master"
    assert committed(journal) < N // 10  # they died with work left, not because it was done
    t0 = time.monotonic()
    second = started([sys.executable, "-c", RUNNER, str(job)])
    seen = []
    while second.poll() is None:
        seen.append(len(workers_of(journal)))
        time.sleep(0.05)
    assert second.returncode == 0, second.stderr.read()
    # The dead master's leases (30 s) were handed back at once, not waited out.
    assert time.monotonic() - t0 < 30
    assert max(seen) == 2  # exactly `count`, no orphans beside them
    got = ids(tmp_path / "out")
    assert len(got) == len(set(got)) == N


def test_sigterm_and_ctrl_c_stop_the_job_say_so_and_a_rerun_resumes(tmp_path):
    job = make_job(tmp_path)
    out = tmp_path / "out"
    journal = out / "_journal.db"
    cmd = [str(BATCHWISE), "batch", str(job), "--json"]
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        before = committed(journal)
        # Its own session, like a terminal's foreground job: Ctrl-C goes to the group.
        master = started(cmd, start_new_session=True)
        wait_for(lambda: committed(journal) > before and len(workers_of(journal)) == 2)  # noqa: B023
        os.killpg(master.pid, sig)
        _, err = master.communicate(timeout=30)
        assert master.returncode == code, err
        name = signal.Signals(sig).name
        assert err == f"stopped by {name}; re-run the same command to resume\n"  # no traceback
        assert workers_of(journal) == []  # stopped with their master
        status = job_status(out)
        assert status["state"] == "stopped" and status["reason"] == f"stopped by {name}"
        assert status["shards"]["leased"] == 0  # their shards were handed back
    last = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert last.returncode == 0, last.stderr
    report = json.loads(last.stdout)
    assert report["state"] == "finished" and report["records"] == N and report["runs"] == 3
    got = ids(out)
    assert len(got) == len(set(got)) == N
