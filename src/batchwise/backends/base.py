"""The instance-backend interface: what a master or gateway needs from where code runs."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class InstanceSpec:
    """What to run. Invariant: ``cpus > 0``."""

    module: str  # run as ``python -m module *args``
    args: tuple[str, ...] = ()
    cpus: float = 1.0  # CPUs it may use: runtime threads (OMP_NUM_THREADS), Ray num_cpus
    pythonpath: tuple[str, ...] = ()  # prepended to PYTHONPATH (user modules)
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment


def describe_exit(code: int) -> str:
    """``killed by SIGSEGV`` or ``exit status 3``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


@dataclass(frozen=True)
class InstanceExit:
    """An instance that ended. ``code`` < 0: killed by signal ``-code``."""

    name: str
    code: int

    def describe(self) -> str:
        return describe_exit(self.code)


class InstanceBackend(Protocol):
    def start(self, name: str, spec: InstanceSpec) -> None:
        """Start an instance; ``name`` must be new."""
        ...

    def poll(self) -> list[InstanceExit]:
        """Instances that ended since the last call."""
        ...

    def drain(self, name: str) -> None:
        """Ask an instance to finish its in-flight work and leave (SIGTERM)."""
        ...

    def kill(self, name: str) -> None: ...
    def kill_all(self) -> None: ...
    def names(self) -> list[str]:
        """Instances running (not yet polled as ended)."""
        ...

    def pids(self) -> list[int]: ...
    def free_cpus(self, own_cpus: float) -> float:
        """CPUs free beyond ``own_cpus`` (what the caller's instances hold); < 0: others
        on the machine need some back."""
        ...

    def close(self) -> None:
        """Wait for every instance to end."""
        ...
