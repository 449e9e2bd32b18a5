"""RayGroupPool on a local Ray cluster: warm before ready, echo, model errors, lost actors.

Ray must never touch the network: these run only in a loopback-only namespace (``make
test`` runs ``-m ray`` under ``unshare --net``), in the ``ray_sandbox`` of conftest.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import pytest

from batchwise.serving.instance import InstanceConfig
from batchwise.serving.pool import Batch, ModelError
from batchwise.serving.ray_pool import RAY_QUOTA, RayGroupPool

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

SLEEP = InstanceConfig("sleep", {"base_s": 0.01, "per_item_s": 0.001}, vcpu=0.5)
GATE_MODEL = '''
import time
from pathlib import Path


class Gate:
    """Says it loaded; its warm-up waits for the file ``gate``; ``boom`` raises."""

    def __init__(self, gate, loaded):
        self.gate = Path(gate)
        Path(loaded).touch()

    def example(self):
        return "warm"

    def __call__(self, batch):
        while batch == ["warm"] and not self.gate.exists():
            time.sleep(0.02)
        if "boom" in batch:
            raise ValueError("boom")
        return list(batch)
'''


@dataclass
class Rec:
    record: str


@pytest.fixture(scope="module")
def ray_address(ray_sandbox):
    """A one-node local cluster (2 CPUs, on 127.0.0.1); the pools connect to its address."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": False, "node_ip_address": "127.0.0.1"})  # fmt: skip
    yield c.address
    ray.shutdown()
    c.shutdown()


def make_pool(cfg: InstanceConfig, address: str, lost: list[Batch] | None = None) -> RayGroupPool:
    on_lost = (lost.append if lost is not None else
               lambda b: pytest.fail(f"batch {b.id} lost"))  # fmt: skip
    return RayGroupPool("g0", cfg, on_lost, lambda b: b.sent_at + 0.1, time.monotonic,
                        address=address)  # fmt: skip


def batch(i: int, records: list[str]) -> Batch:
    return Batch(i, [Rec(r) for r in records], asyncio.get_running_loop().create_future())


async def until(cond, timeout_s: float = 60.0) -> None:
    t_end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < t_end, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_ready_only_after_warm_up_and_model_errors_are_model_errors(ray_address, tmp_path):
    (tmp_path / "bw_gate.py").write_text(GATE_MODEL)
    gate, loaded = tmp_path / "gate", tmp_path / "loaded"
    cfg = InstanceConfig("bw_gate:Gate", {"gate": str(gate), "loaded": str(loaded)},
                         str(tmp_path), vcpu=0.5)  # fmt: skip

    async def main() -> None:
        pool = make_pool(cfg, ray_address)
        pool.scale_to(1)
        ready = asyncio.ensure_future(pool.wait_ready(1, timeout_s=120))
        await until(lambda: loaded.exists() or ready.done())
        # The model is loaded: only the warm-up is left, and the actor must not count yet.
        await asyncio.sleep(0.3)
        assert not ready.done() and pool.ready_count() == 0 and pool.live_count() == 1
        gate.touch()
        await asyncio.wait_for(ready, 60)
        assert pool.ready_count() == 1 and pool.schema is not None
        member = next(iter(pool.members.values()))
        assert member.quota.mechanism == RAY_QUOTA

        bad, good = batch(1, ["a", "boom"]), batch(2, ["c", "d"])
        pool.submit(bad)
        pool.submit(good)
        with pytest.raises(ModelError, match="ValueError: boom"):
            await asyncio.wait_for(bad.future, 30)
        outputs, busy = await asyncio.wait_for(good.future, 30)
        assert outputs == ["c", "d"] and busy > 0  # the actor lived on after the error
        assert pool.deaths == 0
        await pool.close()
        assert not pool.members

    asyncio.run(main())


def test_batches_echo_inputs_on_idle_actors_and_queue_in_order(ray_address):
    async def main() -> None:
        pool = make_pool(SLEEP, ray_address)
        pool.scale_to(2)
        await pool.wait_ready(2, timeout_s=120)
        pids = pool.pids()
        assert len(set(pids)) == 2 and os.getpid() not in pids
        batches = [batch(i, [f"{i}-{k}" for k in range(i + 1)]) for i in range(6)]
        for b in batches:
            pool.submit(b)
        assert [b.id for b in pool.queue] == [2, 3, 4, 5]  # two idle actors took 0 and 1
        results = await asyncio.wait_for(asyncio.gather(*(b.future for b in batches)), 60)
        for b, (outputs, _) in zip(batches, results, strict=True):
            assert outputs == [it.record for it in b.items]
        assert all(b.attempts == 1 for b in batches) and not pool.queue
        await pool.close()
        assert not pool.members and pool.ready_count() == 0

    asyncio.run(main())


def test_actor_killed_mid_batch_hands_back_its_batch_and_is_replaced(ray_address):
    slow = InstanceConfig("sleep", {"base_s": 1.0, "per_item_s": 0.0}, vcpu=0.5)

    async def main() -> None:
        lost: list[Batch] = []
        pool = make_pool(slow, ray_address, lost)
        pool.scale_to(1)
        await pool.wait_ready(1, timeout_s=120)
        first = next(iter(pool.members))
        b = batch(1, ["x", "y"])
        pool.submit(b)
        await until(lambda: pool.members[first].batch is b)
        assert pool.kill_one() == first
        await until(lambda: bool(lost))
        assert lost == [b] and not b.future.done() and pool.deaths == 1
        await pool.wait_ready(1, timeout_s=120)  # a replacement, started at once
        assert first not in pool.members and pool.starts == 2
        pool.submit(b)  # what the server's on_lost does with a batch it may retry
        outputs, _ = await asyncio.wait_for(b.future, 30)
        assert outputs == ["x", "y"] and b.attempts == 2
        await pool.close()

    asyncio.run(main())


def test_close_drains_the_queue_then_kills_the_actors(ray_address):
    async def main() -> None:
        pool = make_pool(SLEEP, ray_address)
        pool.scale_to(1)
        await pool.wait_ready(1, timeout_s=120)
        actor = next(iter(pool.members.values())).actor
        b = batch(1, ["z"])
        pool.submit(b)
        await pool.close()
        assert (await b.future)[0] == ["z"]  # drained: queued work still ran
        with pytest.raises(ray.exceptions.RayActorError):
            await asyncio.wait_for(actor.run.remote(["late"]), 30)

    asyncio.run(main())
