"""Where workers run. The master drives any backend through one small interface.

``local``: one OS process per worker on this machine, talking to the SQLite journal
directly. Workers never outlive their master: each asks the kernel for SIGKILL when
the master dies (Linux ``prctl(PR_SET_PDEATHSIG)``) and watches its parent as well
(everywhere); each runs in its own process group, so a Ctrl-C at the terminal reaches
only the master, which stops them. ``ray``: one actor per worker on any Ray cluster
(:mod:`batchwise.batch.ray_backend`).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from batchwise.config.job import JobSpec

FATAL_EXIT = 4
"""Exit status of a worker that cannot start (bad model, bad options): not restarted."""
CRASH_EXIT = 5
"""Exit status of a worker whose thread raised (a bug): the job stops."""
MASTER_PID_ENV = "BATCHWISE_MASTER_PID"
"""Tells a local worker which process is its master (to die with it)."""
PARENT_POLL_S = 1.0
"""How often (s) a local worker checks that its master is still its parent."""
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerExit:
    """A worker that ended: normally (all None), or how it failed."""

    owner: str
    fatal: str | None = None  # could not start (model, options, modules): stop the job
    crash: str | None = None  # a worker thread raised (a bug): stop the job
    died: str | None = None  # killed, crashed hard, node lost: its shards are charged
    started: bool = True  # False: it died before its pipeline was built


def describe_exit(code: int) -> str:
    """``killed by SIGSEGV`` or ``exit status 3``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


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


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process die with ``parent_pid``, its master."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still works
    if os.getppid() != parent_pid:  # the master died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="parent-watchdog").start()  # fmt: skip


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid:
            os._exit(1)


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


class CpuMeter:
    """CPUs busy outside the job's own workers, between two calls (psutil, if installed).

    psutil's ``cpu_percent`` compares with the previous call on the *same* object, so the
    per-process meters are kept from one call to the next.
    """

    def __init__(self) -> None:
        self._procs: dict[int, Any] = {}
        try:
            import psutil

            self._psutil: Any = psutil
            psutil.cpu_percent(interval=None)  # baseline
        except ImportError:
            self._psutil = None

    def others(self, own_pids: list[int]) -> float:
        ps = self._psutil
        if ps is None:
            return 0.0
        total = ps.cpu_percent(interval=None) / 100 * (os.cpu_count() or 1)
        own = 0.0
        for pid in own_pids:
            if pid not in self._procs:
                try:
                    self._procs[pid] = ps.Process(pid)
                    self._procs[pid].cpu_percent(interval=None)  # baseline: counts from now
                except ps.Error:
                    continue
                own += 1.0  # a worker just started: assume it is busy until measured
                continue
            try:
                own += self._procs[pid].cpu_percent(interval=None) / 100
            except ps.Error:
                continue
        for pid in set(self._procs) - set(own_pids):
            del self._procs[pid]
        return max(0.0, total - own)


class LocalBackend:
    """Worker processes (``python -m batchwise.batch.worker``) on this machine."""

    def __init__(self, job: JobSpec, job_path: Path, journal: Path, out_dir: Path) -> None:
        self.job, self.job_path, self.journal, self.out_dir = job, job_path, journal, out_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self._meter = CpuMeter()

    def spawn(self, owner: str) -> None:
        cmd = [sys.executable, "-m", "batchwise.batch.worker", str(self.journal),
               str(self.job_path), str(self.out_dir), owner]  # fmt: skip
        env = dict(os.environ)
        env[MASTER_PID_ENV] = str(os.getpid())
        # User modules named in the job (module:Class) may sit beside the job file.
        extra = str(self.job_path.parent.resolve())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH")) if p)
        threads = str(max(1, round(self.job.workers.cpus)))
        env.setdefault("OMP_NUM_THREADS", threads)
        env.setdefault("MKL_NUM_THREADS", threads)
        # Own process group: the terminal's Ctrl-C goes to the master only, which stops them.
        self.procs[owner] = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                             process_group=0)  # fmt: skip

    def reap(self) -> list[WorkerExit]:
        ended = []
        for owner, p in list(self.procs.items()):
            code = p.poll()
            if code is None:
                continue
            del self.procs[owner]
            fatal = _read_fatal(self.out_dir, owner)
            ready = marker_path(self.out_dir, owner, "ready")
            started = ready.exists()
            ready.unlink(missing_ok=True)
            if code == 0:
                ended.append(WorkerExit(owner))
            elif code == FATAL_EXIT and fatal and fatal.get("kind") == "start":
                ended.append(WorkerExit(owner, fatal=str(fatal.get("error"))))
            elif code == CRASH_EXIT and fatal and fatal.get("kind") == "crash":
                ended.append(WorkerExit(owner, crash=str(fatal.get("error"))))
            else:
                ended.append(WorkerExit(owner, died=describe_exit(code), started=started))
        return ended

    def drain(self, owner: str) -> None:
        if owner in self.procs:
            self.procs[owner].send_signal(signal.SIGTERM)

    def owners(self) -> list[str]:
        return list(self.procs)

    def free_cpus(self) -> float:
        # The master's own CPU (planning, polling) belongs to the job, not to other tenants.
        others = self._meter.others([os.getpid(), *(p.pid for p in self.procs.values())])
        mine = len(self.procs) * self.job.workers.cpus
        return (os.cpu_count() or 1) - others - mine  # < 0: other tenants need CPUs back

    def kill_all(self) -> None:
        for p in self.procs.values():
            p.send_signal(signal.SIGKILL)

    def close(self) -> None:
        for owner, p in self.procs.items():
            p.wait()
            for kind in ("fatal", "ready"):
                marker_path(self.out_dir, owner, kind).unlink(missing_ok=True)
