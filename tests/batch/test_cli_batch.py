"""``batchwise batch`` as users run it: a job beside its own model module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

BATCHWISE = Path(sys.executable).with_name("batchwise")

MODEL = """\
class Score:
    def __call__(self, batch):
        if any(r["v"] == 13 for r in batch):
            raise ValueError("poisoned record 13")
        return [r["v"] + 1 for r in batch]
"""


def job_dir(tmp_path: Path, n: int) -> Path:
    (tmp_path / "usermodel.py").write_text(MODEL)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"v": i}) + "\n" for i in range(n)))
    (tmp_path / "job.yaml").write_text(
        "input: {kind: jsonl, path: in.jsonl}\n"
        "pipeline: {models: [{name: s, model: 'usermodel:Score', batch_size: 4}]}\n"
        "output: {path: out}\nshards: {records: 10}\nworkers: {count: 2}\n"
    )
    return tmp_path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BATCHWISE), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_batch_run_status_and_quarantine_exit_code(tmp_path):
    d = job_dir(tmp_path, 40)
    r = run("batch", "job.yaml", "--json", "--fresh", cwd=d)  # --fresh: nothing to discard yet
    assert r.returncode == 3, r.stderr  # a record was quarantined: the exit status says so
    report = json.loads(r.stdout)
    # The poisoned record is isolated on the shard's last attempt; its 9 neighbours commit.
    assert report["shards"] == {"todo": 0, "leased": 0, "committed": 4, "quarantined": 0}
    assert report["bad_records"] == 1 and report["records"] == 39
    (bad,) = report["quarantined_records"]
    assert bad["record"] == "in.jsonl:14" and "poisoned record 13" in bad["error"]  # row 14
    status = json.loads(run("batch", "status", "out", "--json", cwd=d).stdout)
    assert status["shards"] == report["shards"] and status["bad_records"] == 1
    ids = [json.loads(line)["id"] for p in (d / "out").glob("part-*.jsonl")
           for line in p.read_text().splitlines()]  # fmt: skip
    assert len(ids) == len(set(ids)) == 39 and "in.jsonl:14" not in ids
    assert (d / "out" / "_report.json").exists() and (d / "out" / "_throughput.png").exists()
    human = run("batch", "status", "out", cwd=d)
    assert human.returncode == 3 and "in.jsonl:14" in human.stdout


def test_corrupt_record_is_quarantined_not_dropped(tmp_path):
    d = job_dir(tmp_path, 20)
    lines = (d / "in.jsonl").read_text().splitlines()
    lines[5] = '{"v": 5, truncated'
    (d / "in.jsonl").write_text("\n".join(lines) + "\n")
    report = json.loads(run("batch", "job.yaml", "--json", cwd=d).stdout)
    assert report["records"] == 18  # record 13 is poisoned for the model as well
    bad = {r["record"]: r["error"] for r in report["quarantined_records"]}
    assert sorted(bad) == ["in.jsonl:14", "in.jsonl:6"]  # rows count from 1
    assert bad["in.jsonl:6"].startswith("read: not JSON")


def test_empty_input_and_unwritable_output_are_clear_errors(tmp_path):
    d = job_dir(tmp_path, 0)
    r = run("batch", "job.yaml", cwd=d)
    assert r.returncode == 2 and "hold no records" in r.stderr and "Traceback" not in r.stderr
    (d / "in.jsonl").write_text('{"v": 1}\n')
    shutil.rmtree(d / "out", ignore_errors=True)
    (d / "out").write_text("a file, not a directory")
    r = run("batch", "job.yaml", cwd=d)
    assert r.returncode == 2 and "output.path: cannot write" in r.stderr


def test_model_that_cannot_load_stops_the_job_with_its_error(tmp_path):
    d = job_dir(tmp_path, 10)
    (d / "job.yaml").write_text(
        (d / "job.yaml").read_text().replace("usermodel:Score", "usermodel:Missing")
    )
    r = run("batch", "job.yaml", cwd=d)
    assert r.returncode == 2 and "cannot import 'usermodel:Missing'" in r.stderr


def test_batch_bad_job_file_is_one_clear_error(tmp_path):
    (tmp_path / "job.yaml").write_text("input: {kind: xml, path: x}\n")
    r = run("batch", "job.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert "job.yaml:1: input.kind" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("batch", "status", "nowhere", cwd=tmp_path)
    assert r.returncode == 2 and "no batch journal" in r.stderr


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def test_usage_mistakes_and_missing_code_stop_before_anything_starts(tmp_path):
    d = job_dir(tmp_path, 10)
    assert "unexpected argument 'EXTRA'" in one_line_error(run("batch", "job.yaml", "EXTRA", cwd=d))
    assert "which output directory" in one_line_error(run("batch", "status", cwd=d))
    text = (d / "job.yaml").read_text()
    (d / "job.yaml").write_text(text.replace("path: in.jsonl}", "path: in.jsonl, "
                                             "reader: 'nosuch.io:load'}"))  # fmt: skip
    err = one_line_error(run("batch", "job.yaml", cwd=d))
    assert "job.yaml:1: input.reader: cannot import 'nosuch.io:load'" in err
    assert not (d / "out").exists()  # found in the master: no worker, no journal, no output


def test_corrupt_journal_and_another_jobs_journal_are_one_line_errors(tmp_path):
    d = job_dir(tmp_path, 10)
    (d / "out").mkdir()
    (d / "out" / "_journal.db").write_bytes(bytes(range(256)) * 16)
    err = one_line_error(run("batch", "status", "out", cwd=d))
    assert "_journal.db: not a readable batch journal" in err
    assert "_journal.db: not a readable batch journal" in one_line_error(run("batch", "job.yaml",
                                                                             cwd=d))  # fmt: skip
    from batchwise.batch.progress import run_job

    assert run_job(d / "job.yaml", None, fresh=True)["runs"] == 1  # --fresh: starts over
    (d / "job.yaml").write_text((d / "job.yaml").read_text().replace("records: 10", "records: 5"))
    err = one_line_error(run("batch", "job.yaml", cwd=d))
    assert "belongs to a different job (shards.records: 10 then, 5 now)" in err and "--fresh" in err
