"""An in-memory instance backend for unit tests of masters and controllers.

Nothing runs: ``start`` records the spec, the test decides when an instance ends
(:meth:`StubBackend.finish`) and how many CPUs are free (``free``). The real
backends are tested with real processes in ``tests/backends``.
"""

from __future__ import annotations

import signal

from batchwise.backends.base import InstanceExit, InstanceSpec


class StubBackend:
    def __init__(self, free: float = 0.0) -> None:
        self.free = free  # CPUs the test pretends are free beyond the instances' own
        self.running: dict[str, InstanceSpec] = {}
        self.drained: list[str] = []
        self.started: list[str] = []
        self._ended: list[InstanceExit] = []

    def start(self, name: str, spec: InstanceSpec) -> None:
        if name in self.running:
            raise ValueError(f"instance {name!r} is already running")
        self.running[name] = spec
        self.started.append(name)

    def finish(self, name: str, code: int = 0) -> None:
        """Test hook: ``name`` ends with ``code`` (< 0: killed by that signal)."""
        del self.running[name]
        self._ended.append(InstanceExit(name, code))

    def poll(self) -> list[InstanceExit]:
        ended, self._ended = self._ended, []
        return ended

    def drain(self, name: str) -> None:
        self.drained.append(name)

    def kill(self, name: str) -> None:
        if name in self.running:
            self.finish(name, -int(signal.SIGKILL))

    def kill_all(self) -> None:
        for name in list(self.running):
            self.kill(name)

    def names(self) -> list[str]:
        return list(self.running)

    def pids(self) -> list[int]:
        return []

    def free_cpus(self, own_cpus: float) -> float:
        return self.free  # scripted by the test

    def close(self) -> None:
        self.kill_all()
