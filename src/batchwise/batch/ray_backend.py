"""The ``ray`` backend: one worker actor per worker, on any Ray cluster.

Only the master's node opens the SQLite journal: a *coordinator* actor pinned there
(0 CPUs) serves leases, renewals and commits to worker actors anywhere in the
cluster, with its own clock for every lease deadline (nodes' clocks differ). Its
clock is the master node's, and a new master hands back every earlier lease before
the coordinator starts, so a job resumed on another node or after a reboot never
waits for deadlines written on an old clock.
Workers write their temporary part files into the output directory, which must be
storage shared by all nodes (on one machine, any directory; on Kubernetes, an RWX
volume); the coordinator renames them into place on commit.

A node that disappears takes its actors with it: their ``run`` calls fail, the
master hands their shards back and starts replacements wherever the cluster has
CPUs. ``ray.init`` here never starts the dashboard (Ray must stay on loopback in
tests); connect to a cluster with ``ray.address`` in the job or ``RAY_ADDRESS``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from batchwise import heap
from batchwise.backends.ray import connect, ray_module
from batchwise.batch.backends import WorkerExit
from batchwise.batch.errors import WorkerCrashed
from batchwise.batch.shards import Lease, ShardTable, StaleLeaseError
from batchwise.batch.worker import Worker
from batchwise.clock import WallClock
from batchwise.config.job import JobSpec


class Coordinator:
    """The journal's only user on a Ray cluster (an actor on the master's node)."""

    def __init__(self, journal: str) -> None:
        self.table = ShardTable(journal, create=False)  # the job's retry policy comes with it
        self.clock = WallClock()

    def lease(self, owner: str, lease_s: float) -> Lease | None:
        return self.table.lease(owner, self.clock.now(), lease_s)

    def renew(self, lease: Lease, lease_s: float) -> Lease | None:
        try:
            return self.table.renew(lease, self.clock.now(), lease_s)
        except StaleLeaseError:
            return None

    def mark(self, lease: Lease, phase: str, record: str | None, done: str | None) -> bool:
        return self.table.mark(lease, phase, record, done)

    def commit(self, lease: Lease, tmp: str, final: str, records: int, bad: list) -> bool:
        return self.table.commit(lease, tmp, final, records, bad, self.clock.now())

    def fail(self, lease: Lease, error: str) -> str:
        return self.table.fail(lease, error, self.clock.now())

    def release(self, lease: Lease) -> bool:
        return self.table.release(lease)

    def release_owner(self, owner: str) -> int:
        return self.table.release_owner(owner)

    def finished(self) -> bool:
        return self.table.finished()


class RemoteTable:
    """The worker's view of the journal through the coordinator (``now`` is ignored)."""

    def __init__(self, coordinator: Any) -> None:
        self.c = coordinator
        self.get = ray_module().get

    def lease(self, owner: str, now: float, lease_s: float) -> Lease | None:
        return self.get(self.c.lease.remote(owner, lease_s))

    def renew(self, lease: Lease, now: float, lease_s: float) -> Lease:
        renewed = self.get(self.c.renew.remote(lease, lease_s))
        if renewed is None:
            raise StaleLeaseError(f"shard {lease.shard_id}: lease {lease.token} is stale")
        return renewed

    def mark(self, lease: Lease, phase: str, record: str | None = None,
             done: str | None = None) -> bool:  # fmt: skip
        return self.get(self.c.mark.remote(lease, phase, record, done))

    def commit(self, lease: Lease, tmp_path: Any, final_path: Any, records: int = 0,
               bad: Any = (), now: float | None = None) -> bool:  # fmt: skip
        return self.get(self.c.commit.remote(lease, str(tmp_path), str(final_path), records,
                                             list(bad)))  # fmt: skip

    def fail(self, lease: Lease, error: str, now: float) -> str:
        return self.get(self.c.fail.remote(lease, error))

    def release(self, lease: Lease) -> bool:
        return self.get(self.c.release.remote(lease))

    def release_owner(self, owner: str) -> int:
        return self.get(self.c.release_owner.remote(owner))

    def finished(self) -> bool:
        return self.get(self.c.finished.remote())

    def close(self) -> None:
        pass


class WorkerActor:
    """Runs one :class:`~batchwise.batch.worker.Worker`; ``drain`` may arrive meanwhile."""

    def __init__(self, job_json: str, base: str, out_dir: str, owner: str, coordinator: Any,
                 cpus: float) -> None:  # fmt: skip
        if base not in sys.path:  # user modules named in the job sit beside the job file
            sys.path.insert(0, base)
        self.args = (job_json, base, out_dir, owner, coordinator, cpus)
        self.worker: Worker | None = None

    def run(self) -> dict[str, Any]:
        job_json, base, out_dir, owner, coordinator, cpus = self.args
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, round(cpus))))
        try:
            self.worker = Worker(JobSpec.model_validate_json(job_json), base, Path(out_dir),
                                 owner, lambda: RemoteTable(coordinator), cpus)  # fmt: skip
        except Exception as exc:  # whatever the model's constructor raised: the job stops
            return {"fatal": str(exc) or type(exc).__name__}
        heap.settle()  # as a local worker: the loaded models out of the collector's walks
        try:
            stats = self.worker.run()
        except WorkerCrashed as exc:
            return {"crash": str(exc)}
        return {"committed": stats.committed, "records": stats.records}

    def drain(self) -> None:
        if self.worker is not None:
            self.worker.draining.set()


class RayBackend:
    """Worker actors (``num_cpus = workers.cpus``) and the coordinator on this node."""

    def __init__(self, job: JobSpec, job_path: Path, journal: Path, out_dir: Path) -> None:
        ray = connect(job.ray.address)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.ray, self.job = ray, job
        self.coordinator = (
            ray.remote(Coordinator)
            .options(num_cpus=0, scheduling_strategy=here, max_concurrency=1)
            .remote(str(journal.resolve()))
        )
        self._actor_cls = ray.remote(WorkerActor)
        self.base = str(job_path.parent.resolve())
        self.out_dir = str(out_dir.resolve())
        self.job_json = job.model_dump_json()
        self.actors: dict[str, tuple[Any, Any]] = {}  # owner -> (actor, run ref)
        self._ready: dict[str, Any] = {}  # owner -> ready ref, until the actor has started
        self._cancelled: list[str] = []  # drained before they started: killed, to be reaped

    def spawn(self, owner: str) -> None:
        actor = self._actor_cls.options(
            num_cpus=self.job.workers.cpus, max_restarts=0, max_concurrency=2
        ).remote(self.job_json, self.base, self.out_dir, owner, self.coordinator,
                 self.job.workers.cpus)  # fmt: skip
        self.actors[owner] = (actor, actor.run.remote())
        self._ready[owner] = actor.__ray_ready__.remote()

    def _pending(self) -> list[str]:
        """Owners whose actor has not started yet (waiting for CPUs somewhere)."""
        if not self._ready:
            return []
        refs = {ref: owner for owner, ref in self._ready.items()}
        started, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in started:
            del self._ready[refs[ref]]
        return list(self._ready)

    def _ended(self, owner: str, ref: Any) -> WorkerExit:
        errors = self.ray.exceptions
        try:
            result = self.ray.get(ref)
        except errors.RayTaskError as exc:  # ``run`` itself raised: a bug, not a death
            return WorkerExit(owner, crash=f"worker {owner}: {exc}".splitlines()[0])
        except errors.RayError as exc:  # the actor or its node died: charged, replaced
            return WorkerExit(owner, died=f"{type(exc).__name__}: {exc}".splitlines()[0])
        return WorkerExit(owner, fatal=result.get("fatal"), crash=result.get("crash"))

    def reap(self) -> list[WorkerExit]:
        ended = [WorkerExit(o) for o in self._cancelled]
        self._cancelled.clear()
        refs = {ref: owner for owner, (_, ref) in self.actors.items()}
        if not refs:
            return ended
        done, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in done:
            owner = refs[ref]
            actor, _ = self.actors.pop(owner)
            self._ready.pop(owner, None)
            ended.append(self._ended(owner, ref))
            self.ray.kill(actor)
        return ended

    def drain(self, owner: str) -> None:
        if owner not in self.actors:
            return
        if owner in self._pending():  # never started: nothing to finish, free its request
            self.ray.kill(self.actors.pop(owner)[0])
            del self._ready[owner]
            self._cancelled.append(owner)
            return
        self.actors[owner][0].drain.remote()

    def owners(self) -> list[str]:
        return list(self.actors)

    def free_cpus(self) -> float:
        """Free CPUs, less what actors still waiting to start have asked for."""
        free = float(self.ray.available_resources().get("CPU", 0.0))
        return free - len(self._pending()) * self.job.workers.cpus

    def kill_all(self) -> None:
        for actor, _ in self.actors.values():
            self.ray.kill(actor)
        self.actors.clear()
        self._ready.clear()

    def close(self) -> None:
        for actor, ref in self.actors.values():
            with contextlib.suppress(self.ray.exceptions.RayError):
                self.ray.get(ref, timeout=30)
            self.ray.kill(actor)
        self.actors.clear()
        self._ready.clear()
        self.ray.kill(self.coordinator)
