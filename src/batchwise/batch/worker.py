"""A batch-inference worker: pull shards, run them through the pipeline, commit parts.

Threads: a *reader* leases shards and reads them ahead (``prefetch_shards``), the
stage pools compute, a *writer* assembles each shard's outputs, writes its part file
and commits it (fenced: only the current lease holder's commit counts), a
*heartbeat* renews the leases of in-flight shards every ``lease_s / 3``, and a
*tuner* moves threads between stages (:class:`~batchwise.batch.stages.StageScaler`).

Failing records: on attempts before the last, the shard is handed back (the error
may be transient: a flaky store, an out-of-memory batch). On the last attempt the
records that still fail are isolated and recorded in the journal; the rest of the
shard commits. ``SIGTERM`` drains: no new leases, in-flight shards finish.

The worker talks to its shard table through a factory (one connection per thread):
the SQLite journal directly on the local backend, the master's coordinator actor on
Ray.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from batchwise.batch.pipeline import POLL_S as POLL
from batchwise.batch.pipeline import Batch, StagePool, build_stages, put_until
from batchwise.batch.retry import RetryPolicy
from batchwise.batch.shards import Lease, ShardTable, StaleLeaseError
from batchwise.batch.sinks import part_name, write_part
from batchwise.batch.sources import RecordError, read_shard
from batchwise.batch.stages import StageContext, StageScaler, StageScalerState
from batchwise.clock import Clock, WallClock
from batchwise.config.job import JobSpec, load_job
from batchwise.errors import BatchwiseError

IDLE_POLL_S = 0.2
"""Wait (s) before asking again when no shard is free yet (others are leased)."""
TUNE_EVERY_S = 0.5
"""How often (s) the tuner measures the stages."""
FATAL_EXIT = 4
"""Exit status of a worker that cannot start (bad model, bad options): not restarted."""


class Table(Protocol):
    """What a worker needs from the shard journal (ShardTable or a remote proxy)."""

    def lease(self, owner: str, now: float, lease_s: float) -> Lease | None: ...
    def renew(self, lease: Lease, now: float, lease_s: float) -> Lease: ...
    def commit(self, lease: Lease, tmp_path: str | Path, final_path: str | Path,
               records: int = 0, bad: Any = (), now: float | None = None) -> bool: ...  # fmt: skip
    def fail(self, lease: Lease, error: str, now: float) -> str: ...
    def release(self, lease: Lease) -> bool: ...
    def release_owner(self, owner: str) -> int: ...
    def finished(self) -> bool: ...
    def close(self) -> None: ...


@dataclass
class InFlight:
    """A leased shard between its read and its commit."""

    lease: Lease
    ids: list[str]
    values: list[Any]
    pending: int  # batches not yet back from the last stage


@dataclass
class WorkerStats:
    committed: int = 0  # shards committed by this worker
    records: int = 0  # output rows committed
    failed: int = 0  # shard attempts handed back
    thread_moves: list[dict[str, int]] = field(default_factory=list)


def local_tables(journal: Path, max_attempts: int) -> Callable[[], Table]:
    return lambda: ShardTable(journal, RetryPolicy(max_attempts=max_attempts))


class Worker:
    """One worker (a process, or a Ray actor) of a job."""

    def __init__(
        self,
        job: JobSpec,
        base: str | Path,
        out_dir: Path,
        owner: str,
        tables: Callable[[], Table],
        cpus: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.job, self.out_dir, self.owner, self.tables = job, out_dir, owner, tables
        self.clock = clock or WallClock()
        self.stages = build_stages(job, base, cpus or job.workers.cpus)
        self.stats = WorkerStats()
        self.draining = threading.Event()  # stop leasing, finish what is in flight
        self._stop = threading.Event()  # stop every thread now
        self._reader_done = threading.Event()
        self._inflight: dict[int, InFlight] = {}
        self._lock = threading.Condition()
        bound = job.pipeline.queue_batches
        self._queues = [queue.Queue(maxsize=bound) for _ in range(len(self.stages) + 1)]
        self.pools = [
            StagePool(s, self._queues[i], self._queues[i + 1], self._stop)
            for i, s in enumerate(self.stages)
        ]
        self._batch = max((s.batch_size for s in self.stages), default=0) or 32

    # -- reader ---------------------------------------------------------------
    def _wait_for_room(self) -> None:
        with self._lock:
            limit = 1 + self.job.pipeline.prefetch_shards
            while len(self._inflight) >= limit and not self._stop.is_set():
                self._lock.wait(POLL)

    def _read_loop(self) -> None:
        table = self.tables()
        try:
            while not (self.draining.is_set() or self._stop.is_set()):
                self._wait_for_room()
                lease = table.lease(self.owner, self.clock.now(), self.job.lease_s)
                if lease is None:
                    with self._lock:
                        idle = not self._inflight
                    if idle and table.finished():
                        return
                    WallClock().sleep(IDLE_POLL_S)
                    continue
                if self.draining.is_set():
                    table.release(lease)
                    return
                try:
                    records = read_shard(lease.spec, self.job.input)
                except Exception as exc:  # the whole shard is unreadable: retry policy
                    table.fail(lease, f"read: {type(exc).__name__}: {exc}", self.clock.now())
                    self.stats.failed += 1
                    continue
                self._submit(lease, records)
        finally:
            table.close()
            self._reader_done.set()

    def _submit(self, lease: Lease, records: list[tuple[str, Any]]) -> None:
        order = list(range(len(records)))
        if self.job.pipeline.sort_by_size:
            order.sort(key=lambda i: _size(records[i][1]))
        cuts = [order[i : i + self._batch] for i in range(0, len(order), self._batch)] or [[]]
        with self._lock:
            self._inflight[lease.shard_id] = InFlight(
                lease, [r for r, _ in records], [v for _, v in records], len(cuts)
            )
        for idx in cuts:
            batch = Batch(lease.shard_id, idx, [records[i][1] for i in idx])
            if not put_until(self._queues[0], batch, self._stop):
                return

    # -- writer ---------------------------------------------------------------
    def _write_loop(self) -> None:
        table = self.tables()
        try:
            while not self._stop.is_set():
                try:
                    batch: Batch = self._queues[-1].get(timeout=POLL)
                except queue.Empty:
                    with self._lock:
                        idle = not self._inflight
                    if idle and self._reader_done.is_set():
                        return
                    continue
                with self._lock:
                    shard = self._inflight[batch.shard]
                for i, v in zip(batch.index, batch.values, strict=True):
                    shard.values[i] = v
                shard.pending -= 1
                if shard.pending == 0:
                    self._finish(table, shard)
                    with self._lock:
                        del self._inflight[batch.shard]
                        self._lock.notify_all()
        finally:
            table.close()

    def _finish(self, table: Table, shard: InFlight) -> None:
        lease = shard.lease
        bad = [(rid, f"{v.stage}: {v.message}") for rid, v in zip(shard.ids, shard.values,
               strict=True) if isinstance(v, RecordError)]  # fmt: skip
        if bad and lease.attempt < self.job.max_attempts:
            rid, err = bad[0]
            table.fail(lease, f"{len(bad)} record(s) failed, e.g. {rid}: {err}", self.clock.now())
            self.stats.failed += 1
            return
        rows = [(rid, v) for rid, v in zip(shard.ids, shard.values, strict=True)
                if not isinstance(v, RecordError)]  # fmt: skip
        fmt = self.job.output.format
        tmp = self.out_dir / f".part-{lease.shard_id:06d}.{lease.token}.tmp"
        try:
            write_part(rows, tmp, fmt)
        except Exception as exc:  # e.g. disk full: hand the shard back, keep the error
            tmp.unlink(missing_ok=True)
            table.fail(lease, f"write: {type(exc).__name__}: {exc}", self.clock.now())
            self.stats.failed += 1
            return
        final = self.out_dir / part_name(lease.shard_id, fmt)
        if table.commit(lease, tmp, final, len(rows), bad, self.clock.now()):
            self.stats.committed += 1
            self.stats.records += len(rows)

    # -- heartbeat and tuner --------------------------------------------------
    def _heartbeat_loop(self) -> None:
        table = self.tables()
        try:
            while not self._stop.wait(self.job.lease_s / 3):
                with self._lock:
                    shards = list(self._inflight.values())
                for s in shards:
                    # Taken over (StaleLeaseError): the commit will be refused, output discarded.
                    with contextlib.suppress(StaleLeaseError):
                        s.lease = table.renew(s.lease, self.clock.now(), self.job.lease_s)
        finally:
            table.close()

    def _tune_loop(self) -> None:
        scaler, state = StageScaler(), StageScalerState()
        budget = sum(s.threads for s in self.stages) + max(1, int(self.job.workers.cpus))
        while not self._stop.wait(TUNE_EVERY_S):
            ctx = StageContext(self.clock.now(), tuple(p.stats() for p in self.pools), budget)
            threads, new_state = scaler.decide(ctx, state)
            if new_state != state:
                for pool in self.pools:
                    pool.resize(threads[pool.stage.name])
                self.stats.thread_moves.append(threads)
            state = new_state

    # -- run ------------------------------------------------------------------
    def run(self) -> WorkerStats:
        """Work until no shard is left (or drained); return what this worker did."""
        for pool in self.pools:
            pool.resize(pool.stage.threads)
        loops = [self._read_loop, self._write_loop, self._heartbeat_loop]
        if self.job.pipeline.adapt_threads:
            loops.append(self._tune_loop)
        threads = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in loops]
        for t in threads:
            t.start()
        try:
            threads[0].join()
            threads[1].join()
        finally:
            self._stop.set()
            for t in threads:
                t.join(5)
            for pool in self.pools:
                pool.join()
            table = self.tables()
            try:
                table.release_owner(self.owner)  # prefetched or unfinished shards go back
            finally:
                table.close()
        return self.stats


def _size(value: Any) -> int:
    """Payload size for length-aware batching: text/bytes length, else the text field."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(len(v) for v in value.values() if isinstance(v, str | bytes))
    return 0


def fatal_path(out_dir: Path, owner: str) -> Path:
    return out_dir / f".fatal-{owner}"


def main() -> None:
    """``python -m batchwise.batch.worker JOURNAL JOB OUT_DIR OWNER`` (started by the master)."""
    journal, job_path, out_dir, owner = sys.argv[1:5]
    job = load_job(job_path)
    try:
        worker = Worker(job, Path(job_path).parent, Path(out_dir), owner,
                        local_tables(Path(journal), job.max_attempts))  # fmt: skip
    except (BatchwiseError, ImportError, OSError) as exc:
        fatal_path(Path(out_dir), owner).write_text(str(exc), encoding="utf-8")
        sys.exit(FATAL_EXIT)
    signal.signal(signal.SIGTERM, lambda *_: worker.draining.set())
    try:
        worker.run()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    os._exit(0)  # daemon threads of model runtimes must not hold the process


if __name__ == "__main__":
    main()
