"""Where workers run. The master drives any backend through one small interface.

``local``: one OS process per worker on this machine, talking to the SQLite journal
directly. ``ray``: one actor per worker on any Ray cluster
(:mod:`batchwise.batch.ray_backend`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

from batchwise.batch.worker import FATAL_EXIT, fatal_path
from batchwise.config.job import JobSpec


class Backend(Protocol):
    def spawn(self, owner: str) -> None: ...
    def reap(self) -> list[tuple[str, str | None]]:
        """Workers that ended since the last call: ``(owner, fatal error or None)``."""
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
        # User modules named in the job (module:Class) may sit beside the job file.
        extra = str(self.job_path.parent.resolve())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH")) if p)
        threads = str(max(1, round(self.job.workers.cpus)))
        env.setdefault("OMP_NUM_THREADS", threads)
        env.setdefault("MKL_NUM_THREADS", threads)
        self.procs[owner] = subprocess.Popen(cmd, env=env)

    def reap(self) -> list[tuple[str, str | None]]:
        ended = []
        for owner, p in list(self.procs.items()):
            code = p.poll()
            if code is None:
                continue
            del self.procs[owner]
            fatal = None
            marker = fatal_path(self.out_dir, owner)
            if code == FATAL_EXIT and marker.exists():
                fatal = marker.read_text(encoding="utf-8")
                marker.unlink()
            ended.append((owner, fatal))
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
        for p in self.procs.values():
            p.wait()
