"""The job master: shard the input, keep the right number of workers running, report.

The journal (``_journal.db``) lives in the output directory. Restarting the master
with the same job resumes from it: committed shards stay committed, shards that
were leased by dead workers return to todo (at once when the master saw the worker
die, else when their lease expires).

Each ``step`` reaps ended workers (a dead worker's shards go back to todo; a worker
that could not start at all stops the job with its error), asks the
:class:`~batchwise.batch.controller.WorkerScaler` for a worker count from backlog and
free CPUs, spawns or drains workers to match, and samples the timeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchwise.batch.backends import Backend, LocalBackend
from batchwise.batch.controller import ScaleContext, ScaleState, WorkerScaler
from batchwise.batch.sharding import plan_shards
from batchwise.batch.shards import ShardTable
from batchwise.clock import Clock, WallClock
from batchwise.config.job import JobSpec, load_job
from batchwise.errors import BatchwiseError

JOURNAL_NAME = "_journal.db"
POLL_S = 0.2
"""How often (s) the master checks its workers."""
BAD_RECORDS_IN_REPORT = 100
"""Quarantined records listed in the report (all of them stay in the journal)."""


def make_backend(job: JobSpec, job_path: Path, journal: Path, out_dir: Path) -> Backend:
    if job.backend == "ray":
        from batchwise.batch.ray_backend import RayBackend

        return RayBackend(job, job_path, journal, out_dir)
    return LocalBackend(job, job_path, journal, out_dir)


@dataclass
class Master:
    """Runs one job to the end on a backend (local processes unless the job says ray)."""

    job_path: Path
    backend: Backend | None = None
    clock: Clock = field(default_factory=WallClock)
    scaler: WorkerScaler = field(default_factory=WorkerScaler)
    restarts: int = 0
    timeline: list[dict[str, float]] = field(default_factory=list)
    job: JobSpec = field(init=False)
    out_dir: Path = field(init=False)
    journal: Path = field(init=False)
    _seq: int = 0
    _state: ScaleState = field(default_factory=ScaleState)
    _draining: set[str] = field(default_factory=set)
    _t0: float = 0.0
    _records0: int = 0  # records already committed when this master started (resume)

    def __post_init__(self) -> None:
        self.job = load_job(self.job_path)
        base = self.job_path.parent
        out = Path(self.job.output.path)
        self.out_dir = out if out.is_absolute() else base / out
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise BatchwiseError(f"output.path: cannot write to {self.out_dir}: {exc}") from None
        self.journal = self.out_dir / JOURNAL_NAME
        table = ShardTable(self.journal)
        try:
            if sum(table.counts().values()) == 0:  # a new job; a resumed one keeps its shards
                table.add_shards(plan_shards(self.job.input, self.job.shards, base))
            self._records0 = table.records_committed()
        finally:
            table.close()
        if self.backend is None:
            self.backend = make_backend(self.job, self.job_path, self.journal, self.out_dir)
        self._t0 = self.clock.now()

    @property
    def procs(self) -> dict[str, Any]:
        """Local worker processes by owner (empty on other backends)."""
        return getattr(self.backend, "procs", {})

    def _table(self) -> ShardTable:
        return ShardTable(self.journal)

    def _spawn(self) -> None:
        self._seq += 1
        assert self.backend is not None
        self.backend.spawn(f"w{os.getpid()}-{self._seq}")

    def step(self) -> bool:
        """Reap, rescale, sample; True once every shard is settled and no worker is left."""
        backend = self.backend
        assert backend is not None
        table = self._table()
        try:
            counts = table.counts()
            records = table.records_committed()
            ended = backend.reap()
            for owner, fatal in ended:
                # The worker is gone, so it can never commit: hand its shards back now.
                table.release_owner(owner)
                if fatal is not None:
                    backend.kill_all()
                    raise BatchwiseError(f"worker could not start: {fatal}")
                if owner in self._draining:
                    self._draining.discard(owner)
                elif counts["todo"] or counts["leased"]:
                    self.restarts += 1
        finally:
            table.close()
        backlog = counts["todo"] + counts["leased"]
        active = [o for o in backend.owners() if o not in self._draining]
        self.timeline.append(
            {"t": self.clock.now() - self._t0, "records": records, "workers": len(active)}
        )
        if backlog == 0:
            if not backend.owners():
                for tmp in self.out_dir.glob(".part-*.tmp"):  # of workers killed mid-write
                    tmp.unlink(missing_ok=True)
                return True
            for owner in active:  # running ones exit by themselves; not-started ones go now
                backend.drain(owner)
                self._draining.add(owner)
            return False
        lo, hi = self.job.workers.bounds
        ctx = ScaleContext(self.clock.now(), backlog, len(active), lo, hi,
                           backend.free_cpus(), self.job.workers.cpus)  # fmt: skip
        target, self._state = self.scaler.decide(ctx, self._state)
        for _ in range(target - len(active)):
            self._spawn()
        for owner in active[target:]:  # the newest ones leave first
            backend.drain(owner)
            self._draining.add(owner)
        return False

    def run(self) -> dict[str, Any]:
        try:
            while not self.step():
                self.clock.sleep(POLL_S)
        finally:
            assert self.backend is not None
            self.backend.close()
        return self.report()

    def kill(self) -> None:
        assert self.backend is not None
        self.backend.kill_all()

    def report(self) -> dict[str, Any]:
        table = self._table()
        try:
            elapsed = self.clock.now() - self._t0
            records = table.records_committed()
            return {
                "shards": table.counts(),
                "records": records,
                "bad_records": table.bad_record_count(),
                "quarantined_records": table.bad_records(BAD_RECORDS_IN_REPORT),
                "quarantined": table.quarantined(),
                "worker_restarts": self.restarts,
                "output": str(self.out_dir),
                "elapsed_s": elapsed,
                "records_per_s": (records - self._records0) / elapsed if elapsed > 0 else 0.0,
                "timeline": self.timeline,
            }
        finally:
            table.close()
