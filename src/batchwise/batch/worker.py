"""A batch-inference worker: pull shards, run them through the pipeline, commit parts.

Threads: a *reader* leases shards and reads them ahead (``prefetch_shards``), the
stage pools compute, a *writer* assembles each shard's outputs, writes its part file
and commits it (fenced: only the current lease holder's commit counts), a
*heartbeat* renews the leases of in-flight shards every ``lease_s / 3``, and a
*tuner* moves threads between stages (:class:`~batchwise.batch.stages.StageScaler`).
An exception in any of these threads stops the worker and fails it loudly
(:class:`~batchwise.batch.errors.WorkerCrashed`); none is swallowed.

Failing records: on attempts before the last, the shard is handed back (the error
may be transient: a flaky store, an out-of-memory batch). On the last attempt (the
lease says so: the retry policy decides) the records that still fail are isolated
and recorded in the journal; the rest of the shard commits. A *guarded* lease (the
last attempt of a shard a worker died on) is computed by the reader alone, one
record at a time, each record named in the journal before it runs, so that a record
that kills its worker is caught by name (see :mod:`batchwise.batch.retry`).
``SIGTERM`` drains: no new leases, in-flight shards finish.

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

from batchwise import heap
from batchwise.backends.local import MASTER_PID_ENV, die_with_parent
from batchwise.batch.backends import CRASH_EXIT, FATAL_EXIT, marker_path, write_fatal
from batchwise.batch.errors import WorkerCrashed
from batchwise.batch.pipeline import POLL_S as POLL
from batchwise.batch.pipeline import Batch, StagePool, build_stages, put_until
from batchwise.batch.shards import Lease, ShardTable, StaleLeaseError
from batchwise.batch.sinks import part_name, warm_up, write_part
from batchwise.batch.sources import RecordError, read_shard
from batchwise.batch.stages import StageContext, StageScaler, StageScalerState
from batchwise.clock import Clock, WallClock
from batchwise.config.job import JobSpec, load_job

IDLE_POLL_S = 0.2
"""Wait (s) before asking again when no shard is free yet (others are leased)."""
TUNE_EVERY_S = 0.5
"""How often (s) the tuner measures the stages."""


class Table(Protocol):
    """What a worker needs from the shard journal (ShardTable or a remote proxy)."""

    def lease(self, owner: str, now: float, lease_s: float) -> Lease | None: ...
    def renew(self, lease: Lease, now: float, lease_s: float) -> Lease: ...
    def mark(self, lease: Lease, phase: str, record: str | None = None,
             done: str | None = None) -> bool: ...  # fmt: skip
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


def local_tables(journal: Path) -> Callable[[], Table]:
    """One connection per thread to the job's journal (its retry policy comes with it)."""
    return lambda: ShardTable(journal, create=False)


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
        warm_up(job.output.format)
        self.stats = WorkerStats()
        self.draining = threading.Event()  # stop leasing, finish what is in flight
        self._stop = threading.Event()  # stop every thread now
        self._reader_done = threading.Event()
        self._inflight: dict[int, InFlight] = {}
        self._lock = threading.Condition()
        self._failure: str | None = None  # the first worker thread that raised, with traceback
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

    def _idle(self) -> bool:
        with self._lock:
            return not self._inflight

    def _read_loop(self) -> None:
        table = self.tables()
        try:
            while not (self.draining.is_set() or self._stop.is_set()):
                self._wait_for_room()
                lease = table.lease(self.owner, self.clock.now(), self.job.lease_s)
                if lease is None:
                    if self._idle() and table.finished():
                        return
                    self._stop.wait(IDLE_POLL_S)
                    continue
                if self.draining.is_set():
                    table.release(lease)
                    return
                if lease.guarded and not table.mark(lease, "read"):
                    continue  # taken over already
                try:
                    records = read_shard(lease.spec, self.job.input)
                except Exception as exc:  # the whole shard is unreadable: retry policy
                    table.fail(lease, f"read: {type(exc).__name__}: {exc}", self.clock.now())
                    self.stats.failed += 1
                    continue
                if lease.guarded:
                    self._run_guarded(table, lease, records)
                else:
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

    # -- guarded: one journaled record at a time --------------------------------
    def _run_guarded(self, table: Table, lease: Lease, records: list[tuple[str, Any]]) -> None:
        """Compute a guarded shard here, alone: wait until no other shard computes, then
        each record after naming it in the journal (``mark``), suspects first; records
        known to kill workers are quarantined without being computed."""
        shard = InFlight(lease, [r for r, _ in records], [v for _, v in records], 0)
        with self._lock:
            self._inflight[lease.shard_id] = shard  # the heartbeat renews it meanwhile
        # While others compute, a death is theirs, not this shard's: say so in the journal.
        waiting = len(self._inflight) > 1 and table.mark(lease, "wait")
        with self._lock:
            while waiting and len(self._inflight) > 1 and not self._stop.is_set():
                self._lock.wait(POLL)
        try:
            if self._stop.is_set() or not self._compute_guarded(table, shard):
                return  # stopping, or the lease was lost: the journal has it back
            self._finish(table, shard)
        finally:
            with self._lock:
                del self._inflight[lease.shard_id]
                self._lock.notify_all()

    def _compute_guarded(self, table: Table, shard: InFlight) -> bool:
        killers = dict(shard.lease.killers)
        first = {rid: n for n, rid in enumerate(shard.lease.suspects)}
        rank = len(first)
        order = sorted(range(len(shard.ids)), key=lambda i: (first.get(shard.ids[i], rank), i))
        done: str | None = None
        for i in order:
            rid = shard.ids[i]
            if rid in killers:
                shard.values[i] = RecordError("worker", killers[rid])
                continue
            if isinstance(shard.values[i], RecordError) or self._stop.is_set():
                continue
            if not table.mark(shard.lease, "record", rid, done):
                return False
            value = shard.values[i]
            for stage in self.stages:
                (value,) = stage.apply([value])
            shard.values[i], done = value, rid
        # Nothing computes now: a death from here on (the commit) names no record.
        return not self._stop.is_set() and table.mark(shard.lease, "commit", None, done)

    # -- writer ---------------------------------------------------------------
    def _write_loop(self) -> None:
        table = self.tables()
        try:
            while not self._stop.is_set():
                try:
                    batch: Batch = self._queues[-1].get(timeout=POLL)
                except queue.Empty:
                    if self._idle() and self._reader_done.is_set():
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
        if bad and not lease.last:
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
    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        """Run a worker thread; if it raises, remember the first failure and stop all."""

        def run() -> None:
            try:
                loop()
            except BaseException as exc:
                with self._lock:
                    if self._failure is None:
                        tb = "".join(traceback.format_exception(exc)).rstrip()
                        self._failure = f"{loop.__name__}: {type(exc).__name__}: {exc}\n{tb}"
                self._stop.set()

        return run

    def run(self) -> WorkerStats:
        """Work until no shard is left (or drained); return what this worker did.

        Raises :class:`WorkerCrashed` if any of its threads raised (its shards go back)."""
        for pool in self.pools:
            pool.resize(pool.stage.threads)
        loops = [self._read_loop, self._write_loop, self._heartbeat_loop]
        if self.job.pipeline.adapt_threads:
            loops.append(self._tune_loop)
        threads = [threading.Thread(target=self._guard(f), name=f.__name__, daemon=True)
                   for f in loops]  # fmt: skip
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
        if self._failure is not None:
            raise WorkerCrashed(f"worker {self.owner}: {self._failure}")
        return self.stats


def _size(value: Any) -> int:
    """Payload size for length-aware batching: text/bytes length, else the text field."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(len(v) for v in value.values() if isinstance(v, str | bytes))
    return 0


def main() -> None:
    """``python -m batchwise.batch.worker JOURNAL JOB OUT_DIR OWNER`` (started by the master).

    Exit status 0: done or drained; FATAL_EXIT: could not start (the reason is in the
    ``.fatal-OWNER`` marker, no traceback); CRASH_EXIT: a worker thread raised.
    """
    journal, job_path, out_dir, owner = sys.argv[1:5]
    master = os.environ.get(MASTER_PID_ENV)
    if master:
        die_with_parent(int(master))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master stops us, not the terminal
    out = Path(out_dir)
    try:
        job = load_job(job_path)
        worker = Worker(job, Path(job_path).parent, out, owner, local_tables(Path(journal)))
    except Exception as exc:  # whatever the model's constructor raised: the job stops
        write_fatal(out, owner, "start", str(exc) or type(exc).__name__)
        os._exit(FATAL_EXIT)
    heap.settle()  # models loaded: their objects out of the collector's walks (batchwise.heap)
    marker_path(out, owner, "ready").touch()
    signal.signal(signal.SIGTERM, lambda *_: worker.draining.set())
    try:
        worker.run()
    except WorkerCrashed as exc:
        write_fatal(out, owner, "crash", str(exc))
        print(str(exc), file=sys.stderr, flush=True)
        os._exit(CRASH_EXIT)
    os._exit(0)  # daemon threads of model runtimes must not hold the process


if __name__ == "__main__":
    main()
