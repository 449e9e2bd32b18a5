"""Where workers run. The master drives any backend through one small interface.

``local``: one OS process per worker on this machine (the shared
:mod:`batchwise.backends.local` processes: they die with their master and run in their
own process group), talking to the SQLite journal directly. ``ray``: one actor per
worker on any Ray cluster (:mod:`batchwise.batch.ray_backend`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from batchwise.backends.base import InstanceSpec, describe_exit
from batchwise.backends.local import LocalProcesses
from batchwise.config.job import JobSpec

FATAL_EXIT = 4
"""Exit status of a worker that cannot start (bad model, bad options): not restarted."""
CRASH_EXIT = 5
"""Exit status of a worker whose thread raised (a bug): the job stops."""


@dataclass(frozen=True)
class WorkerExit:
    """A worker that ended: normally (all None), or how it failed."""

    owner: str
    fatal: str | None = None  # could not start (model, options, modules): stop the job
    crash: str | None = None  # a worker thread raised (a bug): stop the job
    died: str | None = None  # killed, crashed hard, node lost: its shards are charged
    started: bool = True  # False: it died before its pipeline was built


def marker_path(out_dir: Path, owner: str, kind: str) -> Path:
    """``.fatal-OWNER`` (why it could not run, JSON) or ``.ready-OWNER`` (it started)."""
    return out_dir / f".{kind}-{owner}"


def write_fatal(out_dir: Path, owner: str, kind: str, error: str) -> None:
    marker_path(out_dir, owner, "fatal").write_text(
        json.dumps({"kind": kind, "error": error}), encoding="utf-8"
    )


def _read_fatal(out_dir: Path, owner: str) -> dict[str, str] | None:
    path = marker_path(out_dir, owner, "fatal")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        path.unlink(missing_ok=True)
    return data if isinstance(data, dict) else None


class Backend(Protocol):
    def spawn(self, owner: str) -> None: ...
    def reap(self) -> list[WorkerExit]:
        """Workers that ended since the last call."""
        ...

    def drain(self, owner: str) -> None:
        """Ask a worker to finish its in-flight shards and leave."""
        ...

    def owners(self) -> list[str]: ...
    def free_cpus(self) -> float:
        """CPUs the job could still take beyond its workers' own; < 0: others need some back."""
        ...

    def kill_all(self) -> None: ...
    def close(self) -> None: ...


class LocalBackend:
    """Worker processes (``python -m batchwise.batch.worker``) on this machine.

    The processes are the shared :class:`~batchwise.backends.local.LocalProcesses`;
    this adds what a batch worker's exit means (start failure, crash, death) from the
    markers it leaves in the output directory.
    """

    def __init__(self, job: JobSpec, job_path: Path, journal: Path, out_dir: Path) -> None:
        self.job, self.job_path, self.journal, self.out_dir = job, job_path, journal, out_dir
        self.processes = LocalProcesses()

    @property
    def procs(self) -> dict[str, Any]:
        """The worker processes by owner (tests and benchmarks kill them)."""
        return self.processes.procs

    def spawn(self, owner: str) -> None:
        args = (str(self.journal), str(self.job_path), str(self.out_dir), owner)
        # User modules named in the job (module:Class) may sit beside the job file.
        spec = InstanceSpec("batchwise.batch.worker", args, self.job.workers.cpus,
                            pythonpath=(str(self.job_path.parent.resolve()),))  # fmt: skip
        self.processes.start(owner, spec)

    def reap(self) -> list[WorkerExit]:
        return [self._meaning(end.name, end.code) for end in self.processes.poll()]

    def _meaning(self, owner: str, code: int) -> WorkerExit:
        fatal = _read_fatal(self.out_dir, owner)
        ready = marker_path(self.out_dir, owner, "ready")
        started = ready.exists()
        ready.unlink(missing_ok=True)
        if code == 0:
            return WorkerExit(owner)
        if code == FATAL_EXIT and fatal and fatal.get("kind") == "start":
            return WorkerExit(owner, fatal=str(fatal.get("error")))
        if code == CRASH_EXIT and fatal and fatal.get("kind") == "crash":
            return WorkerExit(owner, crash=str(fatal.get("error")))
        return WorkerExit(owner, died=describe_exit(code), started=started)

    def drain(self, owner: str) -> None:
        self.processes.drain(owner)

    def owners(self) -> list[str]:
        return self.processes.names()

    def free_cpus(self) -> float:
        return self.processes.free_cpus(len(self.owners()) * self.job.workers.cpus)

    def kill_all(self) -> None:
        self.processes.kill_all()

    def close(self) -> None:
        owners = self.owners()
        self.processes.close()
        for owner in owners:
            for kind in ("fatal", "ready"):
                marker_path(self.out_dir, owner, kind).unlink(missing_ok=True)
