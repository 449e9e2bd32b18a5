"""Instances yield a contended core to the gateway; a warming instance yields to its siblings.

Real cgroups where this machine has writable ones (skipped with the reason elsewhere),
measured the way the gateway would feel it: a busy loop in this process, timed alone
and beside busy instance processes.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from batchwise.resources.cpu_quota import (
    CGROUP_V1,
    CGROUP_V2,
    V1_ROOT,
    YIELD_SHARES,
    CpuQuota,
    detect,
)

needs_cgroups = pytest.mark.skipif(detect() not in (CGROUP_V1, CGROUP_V2),
                                   reason="no writable cgroup here")  # fmt: skip


def _spin_s(n: int = 3_000_000) -> float:
    t = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - t


@needs_cgroups
def test_busy_instances_with_every_core_do_not_slow_a_root_process():
    """Two instances of 1 vCPU each (the whole machine's quota on 2 cores), both spinning:
    at equal weight this loop would get ~2/3 of a core (~1.5x slower); yielding, ~all."""
    quotas = [CpuQuota.create(f"test-yield-{i}", 1.0) for i in range(2)]
    if quotas[0].mechanism == CGROUP_V1:
        assert (V1_ROOT / "batchwise" / "cpu.shares").read_text().strip() == str(YIELD_SHARES)
    base = min(_spin_s() for _ in range(5))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in quotas]
    try:
        for q, p in zip(quotas, spinners, strict=True):
            q.enter(p.pid)
        time.sleep(0.5)  # the spinners' interpreters start up (in this cgroup) first
        loaded = min(_spin_s() for _ in range(5))
    finally:
        for p in spinners:
            p.kill()
            p.wait()
        for q in quotas:
            q.remove()
    assert loaded < 1.3 * base, (base, loaded)


@needs_cgroups
def test_a_warming_instance_runs_at_low_priority_until_it_is_ready():
    q = CpuQuota.create("test-warm", 0.5)
    try:
        assert q.set_low_priority() and q.set_normal_priority()
        idle = q.path / "cpu.idle"
        if idle.is_file():
            assert idle.read_text().strip() == "0"
            q.set_low_priority()
            assert idle.read_text().strip() == "1"
        elif q.mechanism == CGROUP_V1:
            assert (q.path / "cpu.shares").read_text().strip() == "1024"
    finally:
        q.remove()


def test_priorities_are_no_ops_without_a_cgroup():
    q = CpuQuota(0.5, "duty-cycle")
    assert not q.set_low_priority() and not q.set_normal_priority()
