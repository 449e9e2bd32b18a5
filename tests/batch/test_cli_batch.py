"""``batchwise batch`` as users run it: a job beside its own model module."""

from __future__ import annotations

import json
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
    r = run("batch", "job.yaml", "--json", cwd=d)
    assert r.returncode == 3, r.stderr  # one shard quarantined: the exit status says so
    report = json.loads(r.stdout)
    assert report["shards"] == {"todo": 0, "leased": 0, "committed": 3, "quarantined": 1}
    assert "poisoned record 13" in report["quarantined"][0]["error"]
    status = json.loads(run("batch", "status", "out", "--json", cwd=d).stdout)
    assert status["shards"] == report["shards"]
    ids = [json.loads(line)["id"] for p in (d / "out").glob("part-*.jsonl")
           for line in p.read_text().splitlines()]  # fmt: skip
    assert len(ids) == len(set(ids)) == 30


def test_batch_bad_job_file_is_one_clear_error(tmp_path):
    (tmp_path / "job.yaml").write_text("input: {kind: xml, path: x}\n")
    r = run("batch", "job.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert "job.yaml:1: input.kind" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("batch", "status", "nowhere", cwd=tmp_path)
    assert r.returncode == 2 and "no batch journal" in r.stderr
