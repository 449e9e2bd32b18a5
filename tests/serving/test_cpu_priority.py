"""The gateway outweighs its instances on a contended core; a warming one yields to its siblings.

Real cgroups where this machine has writable ones (skipped with the reason elsewhere),
measured the way the gateway would feel it: a busy loop in this process, timed alone
and beside busy instance processes.
"""

from __future__ import annotations

import os
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
    join_gateway,
    leave_gateway,
)

needs_cgroups = pytest.mark.skipif(detect() not in (CGROUP_V1, CGROUP_V2),
                                   reason="no writable cgroup here")  # fmt: skip


def _spin_s(n: int = 3_000_000) -> float:
    t = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - t


@pytest.mark.skipif(detect() != CGROUP_V1, reason="the gateway's cgroup is cgroup v1 only")
def test_busy_instances_with_every_core_do_not_slow_the_gateway():
    """This process joins the gateway's cgroup; two instances of 1 vCPU each (the whole
    machine's quota on 2 cores) spin: at equal weight this loop would get ~2/3 of a core
    (~1.5x slower); outweighing them 16:1, nearly all of one."""
    gw = join_gateway()
    assert gw is not None and gw.path is not None
    quotas = [CpuQuota.create(f"test-yield-{i}", 1.0) for i in range(2)]
    spinners: list[subprocess.Popen] = []
    try:
        assert (V1_ROOT / "batchwise" / "cpu.shares").read_text().strip() == "1024"
        assert all((q.path / "cpu.shares").read_text().strip() == str(YIELD_SHARES)
                   for q in quotas)  # fmt: skip
        assert str(os.getpid()) in (gw.path / "cgroup.procs").read_text().split()
        base = min(_spin_s() for _ in range(5))
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in quotas]
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
        path = gw.path
        leave_gateway(gw)
    assert not path.exists()  # back at the root, its cgroup gone
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
