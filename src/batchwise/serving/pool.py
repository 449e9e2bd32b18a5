"""A group's function instances: start them warm, route batches to a free one, survive deaths.

Routing: a batch goes to an idle instance (each runs one batch at a time, so "idle" is
"least loaded"). Batches are formed late: the owner's batcher dispatches only while an
instance can take a batch (``can_take``), and an instance that frees asks it for the next
one (``on_free``), so requests wait in the batcher (picked in arrival or deadline
order) rather than in batches formed at arrival, and a freed instance gets a full one;
the FIFO ``queue`` holds only batches handed back (retries) and what a shutdown
flushes. The simulator's finite-instance mode does the same. An instance that dies
mid-batch (its socket closes) hands its batch back to the owner (``on_lost``), which
retries the requests that can still meet their SLO elsewhere and answers the rest;
a replacement is started at once unless the pool is draining.

Warm standby (``scale_to(n, standby=k)``): besides the ``n`` instances that serve, ``k``
more are started and kept warm but get no batches. A scale-up promotes a ready standby at
once instead of waiting the seconds a start takes (model load, warm-up batch) — the
seconds in which a burst's first requests were refused (10x bursty: the whole burst
before the second instance was warm) — and a scale-down demotes an idle instance to
standby instead of stopping it. A standby holds memory, not CPU: it is idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from batchwise.backends.base import InstanceSpec
from batchwise.backends.local import LocalProcesses
from batchwise.resources.cpu_quota import CpuQuota
from batchwise.serving import wire
from batchwise.serving.instance import InstanceConfig

log = logging.getLogger("batchwise.serving")

MAX_START_FAILURES = 3
"""Failed starts in a row after which a group stops starting instances (a broken model)."""
START_TIMEOUT_S = 600.0
"""An instance that is not warm within this is given up on (model loads are slow under quotas)."""


@dataclass
class Batch:
    """Items of one dispatch. ``future`` gets ``(outputs, service_s)`` or an exception."""

    id: int
    items: list[Any]
    future: asyncio.Future
    attempts: int = 0
    sent_at: float = 0.0  # when it reached an instance (server clock)


class ModelError(RuntimeError):
    """The model raised on a batch (HTTP 500 for its requests)."""


class InstanceLost(RuntimeError):
    """The instance running a batch died (its requests may be retried)."""


@dataclass
class Member:
    name: str
    quota: CpuQuota
    sock: str
    ready: bool = False
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    batch: Batch | None = None
    started_at: float = field(default_factory=time.monotonic)
    draining: bool = False
    standby: bool = False  # warm, but routed no batches (promoted by a scale-up)


class GroupPool:
    """Instances of one group on the local machine (processes under CPU quotas)."""

    def __init__(self, name: str, cfg: InstanceConfig, sock_dir: str,
                 on_lost: Callable[[Batch], None], free_estimate: Callable[[Batch], float],
                 now: Callable[[], float]) -> None:  # fmt: skip
        self.name, self.cfg, self.sock_dir, self.now = name, cfg, sock_dir, now
        self.backend = LocalProcesses()
        self.members: dict[str, Member] = {}
        self.queue: deque[Batch] = deque()
        self._on_lost, self._free_estimate = on_lost, free_estimate
        self.on_free: Callable[[], None] | None = None  # an instance is free: form a batch
        self._pumping = False
        self.schema: tuple[Any, Any] | None = None  # (inputs, outputs) the first instance sent
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self.target = 0
        self.standby_target = 0
        self.closing = False
        self.starts = 0
        self.deaths = 0
        self.start_failures = 0
        self.last_error = ""
        self.cold_start_s = 5.0  # spawn to warm, last measured (admission's view of a start)
        self.watcher: Any = None  # a Harvester (serving.harvest) steering quotas, or None
        self.vcpu = cfg.vcpu  # each instance's quota in force (the plan's, or a surge)

    # -- size ---------------------------------------------------------------------------
    def ready_count(self) -> int:
        return sum(m.ready and not m.draining and not m.standby for m in self.members.values())

    def live_count(self) -> int:
        return sum(not m.draining and not m.standby for m in self.members.values())

    def standby_count(self) -> int:
        return sum(m.standby and not m.draining for m in self.members.values())

    def standby_ready(self) -> int:
        return sum(m.standby and m.ready and not m.draining for m in self.members.values())

    def scale_to(self, n: int, standby: int | None = None) -> None:
        """Until ``n`` serve and ``standby`` more are kept warm (None: as before): promote
        standbys (ready ones first), else start; demote idle surplus to standby while it
        is short, else drain (draining ones finish their batch)."""
        self.target = n
        if standby is not None:
            self.standby_target = max(0, standby)
        live = [m for m in self.members.values() if not m.draining and not m.standby]
        spare = sorted((m for m in self.members.values() if m.standby and not m.draining),
                       key=lambda m: (not m.ready, m.started_at))  # fmt: skip
        for _ in range(n - len(live)):
            if spare:
                m = spare.pop(0)
                m.standby = False
                log.info("group %s: standby %s promoted", self.name, m.name)
            else:
                self._spawn()
        if len(live) > n:  # the idle (or newest) ones first
            victims = sorted(live, key=lambda m: (m.batch is not None, -m.started_at))
            for m in victims[: len(live) - n]:
                if m.batch is None and len(spare) < self.standby_target:
                    m.standby = True
                    spare.append(m)
                else:
                    self._drain(m)
        for m in spare[self.standby_target :]:
            self._drain(m)
        for _ in range(self.standby_target - len(spare)):
            self._spawn(standby=True)
        self.pump()  # promoted ones that are ready take work now

    async def wait_ready(self, n: int, timeout_s: float = START_TIMEOUT_S) -> None:
        t_end = time.monotonic() + timeout_s
        while self.ready_count() < n:
            if self.start_failures and self.ready_count() == 0 and not self._starting():
                raise RuntimeError(f"group {self.name}: no instance started ({self.last_error})")
            if time.monotonic() > t_end:
                raise RuntimeError(f"group {self.name}: instances not ready in {timeout_s:.0f} s")
            await asyncio.sleep(0.05)

    def _starting(self) -> bool:
        return any(not m.ready for m in self.members.values())

    def _spawn(self, standby: bool = False) -> None:
        name = f"{self.name}-i{next(self._seq)}"
        quota = CpuQuota.create(name, self.vcpu)
        # Warming (loading the model: seconds of CPU) only soaks up what the serving
        # instances leave: at normal weight a start in a burst slowed the instances
        # already serving it, and admitted requests ran late (seen at 7x bursty).
        with contextlib.suppress(OSError):
            quota.set_low_priority()
        sock = os.path.join(self.sock_dir, f"{name}.sock")
        cfg = replace(self.cfg, cgroup=str(quota.path) if quota.path else None,
                      mechanism=quota.mechanism)  # fmt: skip
        spec = InstanceSpec("batchwise.serving.instance", (sock, cfg.to_json()),
                            cpus=max(1, cfg.threads))  # fmt: skip
        self.backend.start(name, spec)
        member = Member(name, quota, sock, standby=standby)
        self.members[name] = member
        self.starts += 1
        self._track(self._connect(member))

    def _track(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, m: Member) -> None:
        t_end = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(m.sock):
            if m.draining and self._exit_code(m.name) is not None:
                return  # stopped on purpose while starting; _reap forgets it
            if self._exit_code(m.name) is not None or time.monotonic() > t_end:
                self._start_failed(m, f"instance {m.name} ended before it was ready")
                return
            await asyncio.sleep(0.02)
        m.reader, m.writer = await asyncio.open_unix_connection(m.sock)
        hello = await wire.recv_async(m.reader)
        if hello is None:
            self._start_failed(m, f"instance {m.name} died before its greeting")
            return
        self._became_ready(m, (hello[1], hello[2]), "")

    def _became_ready(self, m: Member, schema: tuple[Any, Any], detail: str) -> None:
        """A warm instance: take its schema, note its start-up time, route work to it."""
        self.start_failures = 0  # consecutive failures: a good start resets them
        self.schema = self.schema or schema
        self.cold_start_s = time.monotonic() - m.started_at
        with contextlib.suppress(OSError):
            m.quota.set_normal_priority()
        m.ready = True
        if self.watcher is not None:
            self.watcher.add(m.name, m.quota, self.cfg.vcpu, self.cfg.threads)
        log.info("group %s: instance %s ready%s", self.name, m.name, detail)
        if m.draining:
            self._close(m)
            return
        self.pump()

    def _start_failed(self, m: Member, why: str) -> None:
        """A start that did not reach ready; retried up to MAX_START_FAILURES in a row."""
        self.start_failures += 1
        self.last_error = why
        log.error("group %s: %s", self.name, why)
        self._forget(m)
        if not self.closing and not m.draining and self.start_failures < MAX_START_FAILURES:
            self.scale_to(self.target)

    def _exit_code(self, name: str) -> int | None:
        return self.backend.exit_code(name)

    def resizable(self) -> bool:
        """Can the controller change its instances' vCPU from outside? Only through their
        cgroup quotas (a duty cycle lives in the instance), not while a harvester owns them."""
        return (
            self.watcher is None
            and bool(self.members)
            and all(m.quota.path is not None for m in self.members.values())
        )

    def resize(self, vcpu: float) -> None:
        """Every live instance's quota (and each new one's) becomes ``vcpu`` at once."""
        self.vcpu = vcpu
        for m in self.members.values():
            if not m.draining:
                with contextlib.suppress(OSError):  # its cgroup is leaving with it
                    m.quota.set_vcpu(vcpu)

    # -- work ---------------------------------------------------------------------------
    def submit(self, batch: Batch) -> None:
        self.queue.append(batch)
        self.pump()

    def can_take(self) -> bool:
        """Whether a batch formed now would start at once (an idle ready instance, nothing
        queued before it)."""
        return not self.queue and any(self._idle(m) for m in self.members.values())

    @staticmethod
    def _idle(m: Member) -> bool:
        return m.ready and not m.draining and not m.standby and m.batch is None

    def pump(self) -> None:
        """Give every idle instance a batch: a queued one, else one the owner forms now."""
        if self._pumping:  # on_free dispatched into submit(): the loop below sends it
            return
        self._pumping = True
        try:
            for m in list(self.members.values()):
                if not self._idle(m):
                    continue
                if not self.queue and self.on_free is not None and not self.closing:
                    self.on_free()
                if not self.queue:
                    return
                batch = self.queue.popleft()
                m.batch, batch.sent_at = batch, self.now()
                if self.watcher is not None:
                    self.watcher.started(m.name)
                self._track(self._run(m, batch))
        finally:
            self._pumping = False

    def free_times(self, now: float, warm_in_s: float) -> list[float]:
        """Per live instance, when it can take a new batch (starting ones: in ``warm_in_s``)."""
        out = []
        for m in self.members.values():
            if m.draining or m.standby:
                continue
            if not m.ready:
                out.append(now + warm_in_s)
            elif m.batch is None:
                out.append(now)
            else:
                out.append(self._free_estimate(m.batch))
        return out

    async def _run(self, m: Member, batch: Batch) -> None:
        assert m.writer is not None and m.reader is not None
        batch.attempts += 1
        t0 = self.now()
        try:
            m.writer.write(wire.encode(("predict", batch.id, [it.record for it in batch.items])))
            await m.writer.drain()
            reply = await wire.recv_async(m.reader)
        except (ConnectionError, OSError):
            reply = None
        if reply is None:  # the instance died under this batch
            self._settle(m, batch, None, self.now() - t0, f"exit {self._exit_code(m.name)}")
        else:
            status, _, payload, _service = reply
            self._settle(m, batch, (status, payload), self.now() - t0)

    def _settle(self, m: Member, batch: Batch, result: tuple[str, Any] | None, busy: float,
                why: str = "") -> None:  # fmt: skip
        """After a batch, whatever the transport: answer it, or hand it back if the instance
        died (``result`` None), replace the dead, close a draining one, route the next."""
        m.batch = None
        if self.watcher is not None and result is not None:
            self.watcher.finished(m.name)
        if result is None:
            self.deaths += 1
            log.warning("group %s: instance %s died mid-batch (%s); %d request item(s) back",
                        self.name, m.name, why, len(batch.items))  # fmt: skip
            self._forget(m)
            if not self.closing and not m.draining:
                self.scale_to(self.target)
            self._on_lost(batch)
        else:
            status, payload = result
            if not batch.future.done():
                if status == "ok":
                    batch.future.set_result((payload, busy))
                else:
                    batch.future.set_exception(ModelError(payload))
            if m.draining:
                self._close(m)
        self.pump()

    # -- shutdown -----------------------------------------------------------------------
    def _drain(self, m: Member) -> None:
        m.draining = True
        if m.batch is None:  # idle, or still starting (not worth finishing its load)
            self._close(m)

    def _close(self, m: Member) -> None:
        if m.writer is not None:
            m.writer.close()  # EOF: the instance leaves
        else:  # still starting (no connection yet): SIGTERM ends it at once (nothing in flight)
            self.backend.drain(m.name)
        self._track(self._reap(m))

    async def _reap(self, m: Member) -> None:
        for _ in range(200):
            if self._exit_code(m.name) is not None:
                break
            await asyncio.sleep(0.05)
        else:
            self.backend.kill(m.name)
        self._forget(m)

    def _forget(self, m: Member) -> None:
        self.members.pop(m.name, None)
        if self.watcher is not None:
            self.watcher.remove(m.name)
        self.backend.poll()
        m.quota.remove()
        with contextlib.suppress(OSError):
            os.unlink(m.sock)

    def kill_one(self) -> str | None:
        """SIGKILL a busy instance if any, else any (failure tests and chaos)."""
        ranked = sorted(self.members.values(), key=lambda m: m.batch is None)
        if not ranked:
            return None
        self.backend.kill(ranked[0].name)
        return ranked[0].name

    def pids(self) -> list[int]:
        return self.backend.pids()

    async def close(self) -> None:
        """Drain: queued batches still run on live instances; then every instance leaves."""
        self.closing = True
        t_end = time.monotonic() + 30
        while (self.queue or any(m.batch for m in self.members.values())) and (
            time.monotonic() < t_end and self.ready_count()
        ):
            await asyncio.sleep(0.02)
        for m in list(self.members.values()):
            m.draining = True
            if m.batch is None:
                self._close(m)
        t_end = time.monotonic() + 15
        while self.members and time.monotonic() < t_end:
            await asyncio.sleep(0.05)
        self.backend.kill_all()
        for m in list(self.members.values()):
            self._forget(m)
        while self.queue:
            b = self.queue.popleft()
            if not b.future.done():
                b.future.set_exception(InstanceLost("the server shut down"))
