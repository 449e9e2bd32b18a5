"""The local process backend with real processes, and the in-memory stub."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from batchwise.backends.base import InstanceExit, InstanceSpec, describe_exit
from batchwise.backends.local import LocalProcesses
from batchwise.backends.stub import StubBackend

SLEEPER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # drain: finish and leave
with open(sys.argv[1], "w") as f:
    f.write(os.environ["OMP_NUM_THREADS"] + " " + os.environ["BATCHWISE_MASTER_PID"])
time.sleep(60)
"""


def wait_for(backend: LocalProcesses, n: int, timeout_s: float = 20.0) -> list[InstanceExit]:
    ended: list[InstanceExit] = []
    deadline = time.monotonic() + timeout_s
    while len(ended) < n and time.monotonic() < deadline:
        ended += backend.poll()
        time.sleep(0.05)
    return ended


@pytest.fixture
def sleeper(tmp_path: Path) -> Path:
    (tmp_path / "bw_sleeper.py").write_text(SLEEPER)
    return tmp_path


def test_start_drain_and_kill_real_processes(sleeper: Path):
    backend = LocalProcesses()
    for name in ("a", "b"):
        spec = InstanceSpec("bw_sleeper", (str(sleeper / f"{name}.out"),), cpus=2.0,
                            pythonpath=(str(sleeper),))  # fmt: skip
        backend.start(name, spec)
    with pytest.raises(ValueError, match="already running"):
        backend.start("a", InstanceSpec("bw_sleeper"))
    assert sorted(backend.names()) == ["a", "b"] and len(backend.pids()) == 2
    deadline = time.monotonic() + 20
    while not all((sleeper / f"{n}.out").exists() for n in "ab") and time.monotonic() < deadline:
        time.sleep(0.05)

    assert (sleeper / "a.out").read_text() == f"2 {os.getpid()}"  # threads, parent pid
    backend.drain("a")
    backend.kill("b")
    ended = {e.name: e for e in wait_for(backend, 2)}
    assert ended["a"].code == 0
    assert ended["b"].code == -signal.SIGKILL and ended["b"].describe() == "killed by SIGKILL"
    assert backend.names() == []
    # Whoever waits for one of them sees its end after another caller's poll reaped it.
    assert backend.exit_code("a") == 0 and backend.exit_code("b") == -signal.SIGKILL
    assert backend.exit_code("never-started") is None
    assert isinstance(backend.free_cpus(0.0), float)
    backend.close()


def test_exit_descriptions():
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(-11) == "killed by SIGSEGV"
    assert describe_exit(-200) == "killed by signal 200"


def test_stub_backend_is_scripted_by_the_test():
    stub = StubBackend(free=3.0)
    stub.start("w1", InstanceSpec("m"))
    stub.start("w2", InstanceSpec("m"))
    assert stub.names() == ["w1", "w2"] and stub.free_cpus(2.0) == 3.0
    stub.drain("w1")
    stub.finish("w1")
    stub.kill("w2")
    assert stub.poll() == [InstanceExit("w1", 0), InstanceExit("w2", -signal.SIGKILL)]
    assert stub.poll() == [] and stub.drained == ["w1"] and stub.names() == []
