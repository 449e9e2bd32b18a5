"""RayGroupPool on a local Ray cluster: warm before ready, echo, model errors, lost actors.

Ray must never touch the network: these run only in a loopback-only namespace (``make
test`` runs ``-m ray`` under ``unshare --net``), in the ``ray_sandbox`` of conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
from live import infer_body, sleep_gateway

from batchwise.serving.instance import InstanceConfig
from batchwise.serving.pool import Batch, ModelError
from batchwise.serving.ray_pool import RAY_QUOTA, RayGroupPool
from batchwise.serving.server import ServeOptions

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

SLEEP = InstanceConfig("sleep", {"base_s": 0.01, "per_item_s": 0.001}, vcpu=0.5)
GATE_MODEL = '''
import os
import time
from pathlib import Path


class Gate:
    """Writes its OMP_NUM_THREADS once loaded; its warm-up waits for ``gate``; ``boom`` raises."""

    def __init__(self, gate, loaded):
        self.gate = Path(gate)
        Path(loaded).write_text(os.environ.get("OMP_NUM_THREADS", ""))

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


def make_pool(cfg: InstanceConfig, address: str | None,
              lost: list[Batch] | None = None) -> RayGroupPool:  # fmt: skip
    def unexpected(b: Batch) -> None:  # fails the test where it awaits the batch
        b.future.set_exception(AssertionError(f"batch {b.id} lost"))

    on_lost = lost.append if lost is not None else unexpected
    return RayGroupPool("g0", cfg, on_lost, lambda b: b.sent_at + 0.1, time.monotonic,
                        address=address)  # fmt: skip


def batch(i: int, records: list[str]) -> Batch:
    return Batch(i, [Rec(r) for r in records], asyncio.get_running_loop().create_future())


async def until(cond, timeout_s: float = 60.0) -> None:
    t_end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < t_end, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_no_address_starts_a_local_ray_with_every_core(ray_sandbox, monkeypatch):
    """First in the module: it needs Ray not yet initialised (``ray_address`` is lazy)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized()

    async def main() -> None:
        pool = make_pool(SLEEP, None)
        assert ray.cluster_resources()["CPU"] == os.cpu_count()
        pool.scale_to(1)
        await pool.wait_ready(1, timeout_s=120)
        b = batch(1, ["q"])
        pool.submit(b)
        assert (await asyncio.wait_for(b.future, 30))[0] == ["q"]
        await pool.close()

    try:
        asyncio.run(main())
    finally:
        ray.shutdown()


def test_ready_only_after_warm_up_and_model_errors_are_model_errors(ray_address, tmp_path):
    (tmp_path / "bw_gate.py").write_text(GATE_MODEL)
    gate, loaded = tmp_path / "gate", tmp_path / "loaded"
    cfg = InstanceConfig("bw_gate:Gate", {"gate": str(gate), "loaded": str(loaded)},
                         str(tmp_path), vcpu=0.5, threads=2)  # fmt: skip

    async def main() -> None:
        pool = make_pool(cfg, ray_address)
        pool.scale_to(1)
        ready = asyncio.ensure_future(pool.wait_ready(1, timeout_s=120))
        await until(lambda: loaded.exists() or ready.done())
        # The model is loaded: only the warm-up is left, and the actor must not count yet.
        await asyncio.sleep(0.3)
        assert not ready.done() and pool.ready_count() == 0 and pool.live_count() == 1
        assert loaded.read_text() == "2"  # runtime threads: cfg.threads, not num_cpus
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


def test_gateway_on_ray_actors_loses_no_request_when_one_dies(ray_address):
    """The whole server on RayGroupPool: a killed actor's requests are retried, all 200."""
    # The SLO leaves room for Ray's death notice (seconds on a loaded CI machine) plus a
    # rerun; with a tight one a retry may rightly be refused, which is not what this tests.
    options = ServeOptions(instances=2, backend="ray", ray_address=ray_address)
    with sleep_gateway([("a", 15.0, 20.0)], options, per_item_s=0.05) as gw:
        pool = gw.server.groups[0].pool
        assert isinstance(pool, RayGroupPool)
        results: list[int | str] = []

        def client() -> None:
            req = urllib.request.Request(f"{gw.url}/v2/models/a/infer", data=infer_body(4))
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    assert json.loads(r.read())["outputs"][0]["data"] == ["x"] * 4
                    results.append(r.status)
            except urllib.error.HTTPError as e:  # the reason, in the assertion's message
                results.append(f"{e.code}: {e.read().decode()[:200]}")

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        t_end = time.monotonic() + 30
        while not any(m.batch for m in pool.members.values()) and time.monotonic() < t_end:
            time.sleep(0.005)
        assert pool.kill_one() is not None
        for t in threads:
            t.join(timeout=60)
        assert results == [200] * 8 and pool.deaths == 1
        doc = gw.server.plan_doc()["groups"][0]
        assert doc["cpu_quota"] == RAY_QUOTA
        t_end = time.monotonic() + 60  # a replacement is started
        while pool.ready_count() < 2 and time.monotonic() < t_end:
            time.sleep(0.05)
        assert pool.ready_count() == 2 and gw.server.stats()["groups"]["g0"]["deaths"] == 1
