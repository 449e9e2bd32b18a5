"""Resuming a job: clocks that moved, another job's journal, input that grew or changed,
``--fresh``, re-runs that report the job's real totals, corrupt journals."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from jobfiles import write_job

from batchwise.batch.errors import JobMismatchError, JournalError
from batchwise.batch.journal import fingerprint, prepare
from batchwise.batch.master import Master
from batchwise.batch.progress import REPORT_NAME, job_status, run_job
from batchwise.batch.shards import ShardTable
from batchwise.config.job import load_job


def ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for p in out.glob("part-*.jsonl")
            for line in p.read_text().splitlines()]  # fmt: skip


def test_a_job_resumed_with_the_clock_moved_finishes_within_one_lease(tmp_path):
    n, lease_s = 200, 20
    job = write_job(
        tmp_path,
        n,
        "bw_test_models:SlowDouble",
        f"shards: {{records: 10}}\nworkers: {{count: 2}}\nlease_s: {lease_s}\n",
    )
    first = Master(job)
    while first.progress[0]["committed"] < 3 or not first.progress[0]["leased"]:
        first.step()
        time.sleep(0.05)
    first.kill()  # dies holding leases
    # As if another host, or this one before a reboot, had written the journal: its
    # clock read 1e6 s more than ours (deadlines and a backoff in that clock).
    db = sqlite3.connect(first.journal)
    with db:
        db.execute("UPDATE shards SET lease_deadline = lease_deadline + 1e6 WHERE state='leased'")
        db.execute("UPDATE shards SET not_before = 1e6 WHERE id = "
                   "(SELECT MIN(id) FROM shards WHERE state='todo')")  # fmt: skip
    db.close()
    t0 = time.monotonic()
    report = Master(job).run()
    assert time.monotonic() - t0 < lease_s  # nothing waited for the old clock
    assert report["shards"]["committed"] == n // 10
    got = ids(first.out_dir)
    assert len(got) == len(set(got)) == n


def test_rerun_of_a_finished_job_reports_its_real_totals_and_keeps_them(tmp_path):
    job = write_job(tmp_path, 30, "bw_test_models:SlowDouble",
                    "shards: {records: 10}\nworkers: {count: 1}\n")  # fmt: skip
    first = run_job(job, None)
    again = run_job(job, None)
    assert first["records"] == again["records"] == 30 and again["records_this_run"] == 0
    assert again["runs"] == 2 and again["state"] == "finished"
    assert again["elapsed_s_total"] >= first["elapsed_s"]
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert saved["records"] == 30 and saved["shards"]["committed"] == 3
    assert saved["plot"] == first["plot"]  # the first run's plot is kept, not replaced


# -- what the journal remembers of the job (no workers needed) -----------------------------
def planned(tmp_path: Path, settings: str = "") -> tuple[Path, ShardTable]:
    job = write_job(tmp_path, 25, "bw_test_models:SlowDouble", "shards: {records: 10}\n" + settings)
    table = ShardTable(tmp_path / "journal.db")
    assert prepare(table, load_job(job), tmp_path).shards_added == 3
    return job, table


def test_another_jobs_journal_is_refused_naming_what_differs(tmp_path):
    job, table = planned(tmp_path)
    other = job.read_text().replace("batch_size: 5}", "batch_size: 5, options: {seconds: 2}}")
    job.write_text(other.replace("path: in.jsonl}", "path: '*.jsonl'}"))
    with pytest.raises(JobMismatchError) as exc:
        prepare(table, load_job(job), tmp_path)
    msg = str(exc.value)
    assert "belongs to a different job" in msg and "--fresh" in msg
    assert 'input.path: "in.jsonl" then, "*.jsonl" now' in msg
    assert "pipeline.models[1].options.seconds: null then, 2 now" in msg


def test_what_does_not_change_the_output_may_change_on_resume(tmp_path):
    job, table = planned(tmp_path)
    job.write_text(job.read_text() + "workers: {count: 3}\nlease_s: 10\nmax_attempts: 5\n"
                   "backend: local\n")  # fmt: skip
    assert prepare(table, load_job(job), tmp_path).shards_added == 0
    assert fingerprint(load_job(job)) == table.get("fingerprint")


def test_files_added_to_the_input_become_new_shards_changed_ones_are_refused(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"a{i}.txt").write_text(f"text {i}")
    job = tmp_path / "job.yaml"
    job.write_text("input: {kind: files, path: 'in/*.txt'}\n"
                   "pipeline: {models: [{name: m, model: 'bw_test_models:SlowDouble'}]}\n"
                   "output: {path: out}\nshards: {records: 2}\n")  # fmt: skip
    table = ShardTable(tmp_path / "journal.db")
    assert prepare(table, load_job(job), tmp_path).shards_added == 2
    for i in (3, 4, 5):
        (tmp_path / "in" / f"a{i}.txt").write_text(f"text {i}")
    grown = prepare(table, load_job(job), tmp_path)
    assert (grown.shards_added, grown.inputs_added) == (2, 3)
    assert table.counts()["todo"] == 4
    specs = [json.loads(r[0]) for r in table.query("SELECT spec FROM shards ORDER BY id")]
    assert [Path(f).name for s in specs[2:] for f in s["files"]] == ["a3.txt", "a4.txt", "a5.txt"]
    assert prepare(table, load_job(job), tmp_path).shards_added == 0  # nothing new now
    (tmp_path / "in" / "a1.txt").write_text("a longer text than before")
    os.remove(tmp_path / "in" / "a2.txt")
    with pytest.raises(
        JobMismatchError,
        match=r"1 changed size, e\.g\. .*a1\.txt \(6 -> 25 bytes"
        r"\); 1 no longer there, e\.g\. .*a2\.txt",
    ):
        prepare(table, load_job(job), tmp_path)


def test_fresh_starts_over_and_a_corrupt_journal_is_one_clear_error(tmp_path):
    job = write_job(tmp_path, 10, "bw_test_models:SlowDouble", "shards: {records: 10}\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "_journal.db").write_bytes(os.urandom(4096))
    (out / "part-000007.jsonl").write_text("stale\n")
    (out / "notes.txt").write_text("the user's own file")
    with pytest.raises(JournalError, match=r"_journal\.db: not a readable batch journal"):
        Master(job)
    with pytest.raises(JournalError, match=r"not a readable batch journal"):
        job_status(out)
    report = run_job(job, None, fresh=True)
    assert report["records"] == 10 and report["runs"] == 1
    assert not (out / "part-000007.jsonl").exists() and (out / "notes.txt").exists()
