"""Instances as OS processes on this machine (the embedded default).

Instances never outlive their parent: each asks the kernel for SIGKILL when the
parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``, see :func:`die_with_parent`) and
watches its parent as well (everywhere); each runs in its own process group, so a
Ctrl-C at the terminal reaches only the parent, which stops them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from batchwise.backends.base import InstanceExit, InstanceSpec

MASTER_PID_ENV = "BATCHWISE_MASTER_PID"
"""Tells an instance which process is its parent (to die with it)."""
PARENT_POLL_S = 1.0
"""How often (s) an instance checks that its parent is still its parent."""
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this (instance) process die with ``parent_pid``. Call first thing in the child."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still works
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="parent-watchdog").start()  # fmt: skip


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid:
            os._exit(1)


class CpuMeter:
    """CPUs busy outside a set of own processes, between two calls (psutil, if installed).

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
                own += 1.0  # an instance just started: assume it is busy until measured
                continue
            try:
                own += self._procs[pid].cpu_percent(interval=None) / 100
            except ps.Error:
                continue
        for pid in set(self._procs) - set(own_pids):
            del self._procs[pid]
        return max(0.0, total - own)


REMEMBERED_EXITS = 1024
"""Exit codes kept after ``poll`` reaped their processes (the newest ones)."""


class LocalProcesses:
    """``python -m MODULE`` children of this process, one per instance."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self._ended: dict[str, int] = {}  # exit codes of the ones ``poll`` reaped, newest last
        self._meter = CpuMeter()

    def start(self, name: str, spec: InstanceSpec) -> None:
        if name in self.procs:
            raise ValueError(f"instance {name!r} is already running")
        self._ended.pop(name, None)
        env = dict(os.environ)
        env.update(spec.env)
        env[MASTER_PID_ENV] = str(os.getpid())
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (*spec.pythonpath, env.get("PYTHONPATH")) if p
        )
        threads = str(max(1, round(spec.cpus)))
        env.setdefault("OMP_NUM_THREADS", threads)
        env.setdefault("MKL_NUM_THREADS", threads)
        cmd = [sys.executable, "-m", spec.module, *spec.args]
        # Own process group: the terminal's Ctrl-C goes to the parent only, which stops them.
        self.procs[name] = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                            process_group=0)  # fmt: skip

    def poll(self) -> list[InstanceExit]:
        ended = []
        for name, p in list(self.procs.items()):
            code = p.poll()
            if code is not None:
                del self.procs[name]
                self._ended[name] = code
                ended.append(InstanceExit(name, code))
        while len(self._ended) > REMEMBERED_EXITS:
            del self._ended[next(iter(self._ended))]
        return ended

    def exit_code(self, name: str) -> int | None:
        """``name``'s exit status once it ended, None while it runs (or was never started).

        Also after a ``poll`` reaped it: whoever waits for one instance to end must not
        depend on nobody else having polled first. (A pool closing two instances waited
        out its 10 s reap timeout for the second, which the first one's poll had reaped.)"""
        p = self.procs.get(name)
        return p.poll() if p is not None else self._ended.get(name)

    def drain(self, name: str) -> None:
        if name in self.procs:
            self.procs[name].send_signal(signal.SIGTERM)

    def kill(self, name: str) -> None:
        if name in self.procs:
            self.procs[name].send_signal(signal.SIGKILL)

    def kill_all(self) -> None:
        for p in self.procs.values():
            p.send_signal(signal.SIGKILL)

    def names(self) -> list[str]:
        return list(self.procs)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def free_cpus(self, own_cpus: float) -> float:
        # The parent's own CPU (planning, polling) belongs to the caller, not to other tenants.
        others = self._meter.others([os.getpid(), *self.pids()])
        return (os.cpu_count() or 1) - others - own_cpus

    def close(self) -> None:
        for p in self.procs.values():
            p.wait()
