"""Warm standby instances: a scale-up promotes one at once, a scale-down keeps one warm.

Real instance processes (the ``sleep`` model) in a local ``GroupPool``; the simulator's
pool is held to the same behaviour on its virtual clock.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass

import pytest

from batchwise.serving.instance import InstanceConfig
from batchwise.serving.pool import Batch, GroupPool
from batchwise.sim.instances import InstancePool, PoolSpec

SLEEP = InstanceConfig("sleep", {"base_s": 0.0, "per_item_s": 0.0}, vcpu=0.5, threads=1)


@dataclass
class Rec:
    record: str


async def _until(cond, timeout_s: float = 60.0) -> None:
    t_end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < t_end, "timed out"
        await asyncio.sleep(0.02)


def test_a_scale_up_promotes_the_warm_standby_without_a_start_and_a_new_one_warms():
    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as socks:
            lost: list[Batch] = []
            pool = GroupPool("g0", SLEEP, socks, lost.append, lambda b: b.sent_at + 0.01,
                             time.monotonic)  # fmt: skip
            try:
                pool.scale_to(1, standby=1)
                await pool.wait_ready(1)
                standby = next(m for m in pool.members.values() if m.standby)
                await _until(lambda: standby.ready)
                assert (pool.live_count(), pool.ready_count(), pool.standby_count()) == (1, 1, 1)
                starts = pool.starts
                pool.scale_to(2)  # the standby serves now: no start to wait for
                assert pool.ready_count() == 2 and not standby.standby
                assert pool.starts == starts + 1  # only the standby's replacement
                fut = asyncio.get_running_loop().create_future()
                pool.submit(Batch(1, [Rec("x")], fut))
                assert (await fut)[0] == ["x"]
                replacement = next(m for m in pool.members.values() if m.standby)
                await _until(lambda: replacement.ready)
                pool.scale_to(1)  # the surplus drains: the one standby kept is warm already
                assert (pool.live_count(), pool.standby_count()) == (1, 1)
                await _until(lambda: len(pool.members) == 2)
                pool.scale_to(1, standby=0)
                await _until(lambda: len(pool.members) == 1)
                assert pool.standby_count() == 0 and pool.ready_count() == 1
                assert not lost
            finally:
                await pool.close()

    asyncio.run(scenario())


def test_a_scale_down_demotes_an_idle_instance_to_standby_instead_of_stopping_it():
    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as socks:
            pool = GroupPool("g0", SLEEP, socks, lambda b: None, lambda b: b.sent_at + 0.01,
                             time.monotonic)  # fmt: skip
            try:
                pool.scale_to(2, standby=0)
                await pool.wait_ready(2)
                starts = pool.starts
                pool.scale_to(1, standby=1)
                assert (pool.live_count(), pool.standby_count()) == (1, 1)
                assert len(pool.members) == 2 and pool.starts == starts  # kept, not restarted
                pool.scale_to(2)
                assert pool.ready_count() == 2  # warm at once
            finally:
                await pool.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("standby", [0, 1])
def test_the_simulated_pool_promotes_a_standby_as_the_live_one_does(standby):
    pool = InstancePool(PoolSpec(1, 1, cold_start_s=3.0, autoscale=True), vcpu=None)
    pool.scale_to(0.0, 1, standby)
    assert pool.standby == [3.0] * standby  # warming, as a live start
    ready = pool.scale_to(10.0, 2)  # warm by then: serves at once
    assert ready == ([10.0] if standby else [13.0])
    assert pool.standby == [13.0] * standby  # its replacement
    pool.scale_to(20.0, 1)  # the idle surplus waits as the standby; the extra one goes
    assert pool.live_count() == 1 and len(pool.standby) == standby
