"""A batch-inference worker: pull a shard, run the pipeline, write its part, commit.

Only the lease holder commits (see :mod:`batchwise.batch.shards` for the delivery
guarantee). A failing shard is handed back with its error; the retry policy in
the shard table decides between another attempt and quarantine.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from batchwise.batch.readers import Record, load_callable, read_shard
from batchwise.batch.shards import Lease, ShardTable
from batchwise.clock import Clock, WallClock
from batchwise.config.job import JobSpec, load_job

IDLE_POLL_S = 0.2
"""Wait (s) before asking again when no shard is free yet (others are leased)."""


class Pipeline:
    """preprocess → models in order (batched) → postprocess, for one shard's records."""

    def __init__(self, job: JobSpec) -> None:
        p = job.pipeline
        self.pre = load_callable(p.preprocess) if p.preprocess else None
        self.post = load_callable(p.postprocess) if p.postprocess else None
        self.models = [(m.batch_size, load_callable(m.model)()) for m in p.models]

    def run(self, records: list[Record]) -> list[dict[str, Any]]:
        values = [self.pre(v) if self.pre else v for _, v in records]
        for batch_size, model in self.models:
            out: list[Any] = []
            for i in range(0, len(values), batch_size):
                batch = values[i : i + batch_size]
                result = list(model(batch))
                if len(result) != len(batch):
                    raise RuntimeError(f"model returned {len(result)} outputs for {len(batch)}")
                out.extend(result)
            values = out
        if self.post:
            values = [self.post(v) for v in values]
        return [{"id": rid, "output": v} for (rid, _), v in zip(records, values, strict=True)]


def part_path(out_dir: Path, shard_id: int) -> Path:
    return out_dir / f"part-{shard_id:06d}.jsonl"


def process(table: ShardTable, lease: Lease, job: JobSpec, pipe: Pipeline, out_dir: Path) -> bool:
    rows = pipe.run(read_shard(lease.spec, job.input.kind))
    tmp = out_dir / f".part-{lease.shard_id:06d}.{lease.token}.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return table.commit(lease, tmp, part_path(out_dir, lease.shard_id))


def run_worker(
    journal: Path, job: JobSpec, out_dir: Path, owner: str, clock: Clock | None = None
) -> int:
    """Work until no shard is left; return the number of shards this worker committed."""
    clock = clock or WallClock()
    table = ShardTable(journal)
    pipe = Pipeline(job)
    committed = 0
    try:
        while not table.finished():
            lease = table.lease(owner, clock.now(), job.lease_s)
            if lease is None:
                WallClock().sleep(IDLE_POLL_S)
                continue
            try:
                committed += process(table, lease, job, pipe, out_dir)
            except Exception as exc:  # the shard fails, the worker lives on
                table.fail(lease, f"{type(exc).__name__}: {exc}", clock.now())
    finally:
        table.release_owner(owner)
        table.close()
    return committed


def main() -> None:
    """``python -m batchwise.batch.worker JOURNAL JOB OUT_DIR OWNER`` (started by the master)."""
    journal, job_path, out_dir, owner = sys.argv[1:5]
    try:
        run_worker(Path(journal), load_job(job_path), Path(out_dir), owner)
    except Exception:
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main()
