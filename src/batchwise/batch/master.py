"""The job master: shard the input, keep the right number of workers running, report.

Before anything starts, the master checks that every module, function and model the
job names is there (:mod:`batchwise.batch.preflight`). The journal (``_journal.db``)
lives in the output directory; one master at a time holds it (``_master.lock``).
Restarting the master with the same job resumes from it: committed shards stay
committed, and every lease of the previous master is handed back at once (its
workers died with it, and its deadlines were on its own clock). A different job, or
an input that changed, is refused (:mod:`batchwise.batch.journal`).

Each ``step`` reaps ended workers (a dead worker's shards are charged to the retry
policy; a worker that could not start, or whose thread raised, stops the job), asks
the :class:`~batchwise.batch.controller.WorkerScaler` for a worker count from backlog
and free CPUs, spawns or drains workers to match, and samples the timeline. Polling
reads the journal through one connection, counts only.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchwise.batch.backends import Backend, LocalBackend, WorkerExit
from batchwise.batch.controller import ScaleContext, ScaleState, WorkerScaler
from batchwise.batch.errors import JobStartError, JobStopped, WorkerCrashed
from batchwise.batch.journal import (
    MasterLock,
    Prepared,
    begin_run,
    end_run,
    history,
    prepare,
    remove_outputs,
)
from batchwise.batch.preflight import check_runnable
from batchwise.batch.retry import RetryPolicy
from batchwise.batch.shards import ShardTable
from batchwise.clock import Clock, WallClock
from batchwise.config.job import JobSpec, load_job
from batchwise.errors import BatchwiseError

JOURNAL_NAME = "_journal.db"
POLL_S = 0.2
"""How often (s) the master checks its workers."""
BAD_RECORDS_IN_REPORT = 100
"""Quarantined records listed in the report (all of them stay in the journal)."""
START_DEATHS = 3
"""Workers dying before their pipeline is built, this many times in a row (not by
SIGKILL, which comes from outside), mean they cannot start: the job stops."""


def make_backend(job: JobSpec, job_path: Path, journal: Path, out_dir: Path) -> Backend:
    if job.backend == "ray":
        from batchwise.batch.ray_backend import RayBackend

        return RayBackend(job, job_path, journal, out_dir)
    return LocalBackend(job, job_path, journal, out_dir)


def journal_summary(table: ShardTable) -> dict[str, Any]:
    """Shard and record counts and what was quarantined (report and ``batch status``)."""
    counts, records = table.progress()
    return {
        "shards": counts,
        "records": records,
        "bad_records": table.bad_record_count(),
        "quarantined_records": table.bad_records(BAD_RECORDS_IN_REPORT),
        "quarantined": table.quarantined(),
    }


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT/SIGTERM raise :class:`JobStopped` in the main thread (once: a second
    signal while the master stops its workers is ignored)."""

    def stop(signum: int, _frame: Any) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        raise JobStopped(signal.Signals(signum).name, 128 + signum)

    try:
        saved = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@dataclass
class Master:
    """Runs one job to the end on a backend (local processes unless the job says ray).

    ``fresh``: discard the output directory's journal and earlier outputs first."""

    job_path: Path
    backend: Backend | None = None
    clock: Clock = field(default_factory=WallClock)
    scaler: WorkerScaler = field(default_factory=WorkerScaler)
    fresh: bool = False
    restarts: int = 0
    timeline: list[dict[str, float]] = field(default_factory=list)
    job: JobSpec = field(init=False)
    out_dir: Path = field(init=False)
    journal: Path = field(init=False)
    table: ShardTable = field(init=False)
    prepared: Prepared = field(init=False)
    progress: tuple[dict[str, int], int] = field(init=False)  # the last poll: counts, records
    _run: int = 0
    _seq: int = 0
    _state: ScaleState = field(default_factory=ScaleState)
    _draining: set[str] = field(default_factory=set)
    _t0: float = 0.0
    _records0: int = 0  # records already committed when this master started (resume)
    _start_deaths: int = 0
    _ended: bool = False
    _elapsed: float = 0.0  # this run's duration, once it ended
    _lock: MasterLock | None = None

    def __post_init__(self) -> None:
        self.job = load_job(self.job_path)
        base = self.job_path.resolve().parent
        out = Path(self.job.output.path)
        self.out_dir = out if out.is_absolute() else base / out
        self.journal = self.out_dir / JOURNAL_NAME
        try:
            check_runnable(self.job, self.job_path)
        except JobStopped:
            raise
        except BatchwiseError as exc:
            self._record_failure(str(exc))
            raise
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise BatchwiseError(f"output.path: cannot write to {self.out_dir}: {exc}") from None
        self._lock = MasterLock(self.out_dir)
        try:
            self._open(base)
            if self.backend is None:
                self.backend = make_backend(self.job, self.job_path, self.journal, self.out_dir)
        except BaseException:
            self.close()
            raise
        self._t0 = self.clock.now()

    def _open(self, base: Path) -> None:
        if self.fresh:
            remove_outputs(self.out_dir)
        for stale in (".fatal-*", ".ready-*", ".part-*.tmp"):  # of a previous master's workers
            for path in self.out_dir.glob(stale):
                path.unlink(missing_ok=True)
        policy = RetryPolicy(max_attempts=self.job.max_attempts)
        self.table = ShardTable(self.journal, policy, check=True)
        self.prepared = prepare(self.table, self.job, base)
        self.table.expire_leases()
        self._run = begin_run(self.table)
        self.progress = self.table.progress()
        self._records0 = self.progress[1]

    def _record_failure(self, reason: str) -> None:
        """A resumed job that cannot start says so in its journal (``batch status``)."""
        if not self.journal.is_file():
            return
        try:
            lock = MasterLock(self.out_dir)
        except BatchwiseError:
            return  # another master runs this job: its journal is not ours to write
        try:
            table = ShardTable(self.journal, create=False)
            try:
                end_run(table, begin_run(table), "failed", reason, records=0, elapsed_s=0.0,
                        worker_restarts=0, inputs_added=0)  # fmt: skip
            finally:
                table.close()
        except BatchwiseError:
            pass  # an unreadable journal: the error being raised matters more
        finally:
            lock.release()

    @property
    def procs(self) -> dict[str, Any]:
        """Local worker processes by owner (empty on other backends)."""
        return getattr(self.backend, "procs", {})

    def _spawn(self) -> None:
        self._seq += 1
        assert self.backend is not None
        self.backend.spawn(f"w{os.getpid()}-{self._seq}")

    def _reaped(self, end: WorkerExit) -> None:
        """A worker ended: hand back or charge its shards; stop the job if it must."""
        if end.fatal is not None:
            raise JobStartError(f"a worker could not start: {end.fatal}")
        if end.crash is not None:
            raise WorkerCrashed(end.crash)
        if end.died is None:
            self.table.release_owner(end.owner)  # normally nothing left: it released them
        else:
            self.table.worker_died(end.owner, end.died, self.clock.now())
            if end.started:
                self._start_deaths = 0
            elif end.died != "killed by SIGKILL":  # SIGKILL: from outside (OOM killer, ops)
                self._start_deaths += 1
                if self._start_deaths >= START_DEATHS:
                    raise JobStartError(f"workers died while starting ({end.died}), "
                                        f"{self._start_deaths} times in a row")  # fmt: skip
        if end.owner in self._draining:
            self._draining.discard(end.owner)
        elif end.died is not None or sum(self.progress[0][s] for s in ("todo", "leased")):
            self.restarts += 1

    def step(self) -> bool:
        """Reap, rescale, sample; True once every shard is settled and no worker is left."""
        backend = self.backend
        assert backend is not None
        for end in backend.reap():
            self._reaped(end)
        counts, records = self.progress = self.table.progress()
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

    def run(self, on_tick: Callable[[Master], None] | None = None) -> dict[str, Any]:
        """Run to the end (``on_tick`` after every poll); on any failure or signal the
        workers are stopped, their shards handed back and the run recorded as such."""
        outcome, reason = "failed", None
        try:
            while not self.step():
                if on_tick is not None:
                    on_tick(self)
                self.clock.sleep(POLL_S)
            outcome = "finished"
        except JobStopped as exc:
            outcome, reason = "stopped", f"stopped by {exc.signame}"
            raise
        except BatchwiseError as exc:
            reason = str(exc)
            raise
        except BaseException as exc:
            reason = f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]
            raise
        finally:
            self._end(outcome, reason)
        return self.report()

    def _end(self, outcome: str, reason: str | None) -> None:
        if self._ended:
            return
        self._ended = True
        backend = self.backend
        assert backend is not None
        owners = backend.owners()
        if outcome != "finished":
            backend.kill_all()
        backend.close()
        for owner in owners:  # stopped by us, not by their shards: no attempt used
            self.table.release_owner(owner)
        self.progress = self.table.progress()
        self._elapsed = self.clock.now() - self._t0
        end_run(self.table, self._run, outcome, reason, records=self.progress[1] - self._records0,
                elapsed_s=self._elapsed, worker_restarts=self.restarts,
                inputs_added=self.prepared.inputs_added)  # fmt: skip

    def kill(self) -> None:
        """Die as a master killed with SIGKILL would (tests): workers gone, leases left."""
        assert self.backend is not None
        self.backend.kill_all()
        self.backend.close()
        self._ended = True
        self.close()

    def close(self) -> None:
        """Let go of the journal and the directory's lock (after ``run`` and ``report``)."""
        table = getattr(self, "table", None)
        if table is not None:
            table.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def report(self) -> dict[str, Any]:
        """This run and the job's totals over all its runs (from the journal)."""
        elapsed = self._elapsed if self._ended else self.clock.now() - self._t0
        out = journal_summary(self.table)
        hist = history(self.table)
        current = 0 if self._ended else 1  # a run still going is not in the history yet
        records = out["records"]
        settled = not (out["shards"]["todo"] or out["shards"]["leased"])
        return {
            "state": "finished" if settled else "running" if not self._ended else "stopped",
            **out,
            "records_this_run": records - self._records0,
            "inputs_added": self.prepared.inputs_added,
            "worker_restarts": hist["worker_restarts"] + current * self.restarts,
            "worker_restarts_this_run": self.restarts,
            "runs": hist["runs"],
            "output": str(self.out_dir),
            "elapsed_s": elapsed,
            "elapsed_s_total": hist["elapsed_s"] + current * elapsed,
            "records_per_s": (records - self._records0) / elapsed if elapsed > 0 else 0.0,
            "timeline": self.timeline,
        }
