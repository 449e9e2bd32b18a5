"""Serving and batch work in one pool of CPUs: Dilu's vertical controller on cgroup quotas.

Why: a serving machine sized for its peaks idles most of the time, and a batch job
could use those cores — if it gave them back the moment the services need them. The
gateway knows exactly when that is (it dispatches every batch), so it runs the same
pure policy as the GPU simulation (:mod:`batchwise.gpu.vertical`) on the kernel's CPU
controls:

* every serving instance is a high-priority tenant: its planned vCPU is its request,
  ``limit_factor ×`` that (at most the machine) its limit; its cgroup quota is set to
  the controller's share when it is busy and to its limit while idle (an idle process
  uses nothing, and a batch that arrives may burst at once);
* the low-priority *harvest* cgroup, which batch jobs join (``batchwise batch JOB
  --cgroup PATH``), gets what the busy instances leave, within its budget. It is marked
  ``cpu.idle`` (SCHED_IDLE; the least weight where the kernel lacks it) and made at
  the top of the v1 hierarchy (an idle class only orders siblings: inside the
  instances' folder it would still compete with the gateway at full weight), so the
  kernel itself runs it only on cores nothing else wants, the moment they free up — the exact
  "what is left" of the policy at scheduler granularity; its quota then carries only the
  budget (× every core). Without such a class the quota is what the busy instances
  leave, rewritten at each batch start and end;
* shares are recomputed the moment an instance starts or finishes a batch (not at the
  next tick), and every ``tick_s`` for the budget's feedback, which is ours: its signal
  is how much of its SLO the worst request answered since the last tick used, not how
  much slower than alone a batch ran. A request that used :data:`SLO_TARGET` of its
  SLO is an emergency (the paper's 1.6 threshold, rescaled), one under 67.5 % is calm.
  Why: on two cores everything co-located slows MiniLM's batches (the gateway, the
  load generator and the other instances as much as the batch job), so Dilu's
  "batch ≥ 1.6 × its solo time" fired 39–84 times in 45 s at 5× load and held the
  batch job to 0.2–0.7 of the idle CPU, while with no feedback at all every admitted
  request still met its SLO (``bench/RESULTS.md`` §8); what must be protected is the
  SLO, and the idle class already gives serving every core it asks for.

Serving instances share what instances may use (``instance_cores()``: the cores); an
idle-class harvest group may have every core as well, since it never preempts the
gateway, the instances or the load generator. An
instance's limit never exceeds its runtime threads: a one-thread MiniLM instance cannot
use 1.2 vCPU, and claiming it would idle 0.2. Batch jobs harvest best with one-thread
workers (``workers: {cpus: 1}``): a multi-threaded operator waits for its slowest
thread, and on a machine where serving takes one core at a time that thread waits.
Needs a writable cgroup: without one ``--harvest`` is refused
(a duty cycle cannot be changed from outside the instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchwise.errors import ConfigError
from batchwise.gpu import vertical
from batchwise.gpu.vertical import Budget, Priority, Tenant
from batchwise.resources.cpu_quota import CGROUP_V1, CGROUP_V2, CpuQuota, detect

log = logging.getLogger("batchwise.serving")

TICK_S = 0.05
"""Seconds between feedback ticks (shares also change at every batch start and end)."""
LIMIT_FACTOR = 2.0
"""A serving instance may burst to this × its planned vCPU (at most the machine)."""
SLO_TARGET = 0.9
"""A request answered in this share of its SLO is an emergency (the budget is cut by
``latency / (SLO_TARGET × SLO)``); one under ``RECOVERY_OVERFLOW / EMERGENCY_OVERFLOW``
of that (67.5 % of its SLO) is calm."""
LOW_REQUEST_VCPU = 0.05
"""The harvest group's guaranteed vCPU: nearly nothing (it lives on what is idle)."""
CHANGE_EPS = 0.01
"""A quota is rewritten only when the share moved by more than this (vCPU)."""
LOW = "harvest"


@dataclass
class _Instance:
    quota: CpuQuota
    tenant: Tenant
    busy: bool = False
    vcpu: float = 0.0  # quota in force


class Harvester:
    """Owns the harvest cgroup and every serving instance's quota while serving runs."""

    def __init__(self, capacity: float, tick_s: float = TICK_S,
                 limit_factor: float = LIMIT_FACTOR, low: CpuQuota | None = None,
                 cores: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        if low is None:
            mech = detect()
            if mech not in (CGROUP_V1, CGROUP_V2):
                raise ConfigError(f"--harvest needs a writable cgroup (cgroup v1 at "
                                  f"/sys/fs/cgroup/cpu or a delegated v2 subtree); this "
                                  f"process has {mech}", field="--harvest")  # fmt: skip
            low = CpuQuota.create(LOW, capacity, mech, top_level=True)
        self.low = low
        idle_class = self.idle_class = self.low.set_low_priority()
        self.capacity = capacity
        self.tick_s, self.limit_factor = tick_s, limit_factor
        # What the harvest group may have: with the idle class it never preempts anyone,
        # so every core the others leave may be lent to it.
        self.cores = max(capacity, cores or 0.0) if idle_class else capacity
        self.low_tenant = Tenant(LOW, Priority.LOW, min(LOW_REQUEST_VCPU, capacity), self.cores)
        self.instances: dict[str, _Instance] = {}
        self.budget = Budget()
        self.overflow: float | None = None  # worst request's overflow since the last tick
        self.low_vcpu = capacity
        self.low_vcpu_s = 0.0  # ∫ harvest quota dt (for its mean)
        self.changes = 0
        self.answers = 0  # requests whose latency fed the budget
        self.clock = clock  # injected: only the stats' time averages read it
        self._since = clock()
        self.started_at = self._since
        self._task: asyncio.Task | None = None

    @property
    def path(self) -> str:
        return str(self.low.path)

    # -- instances (the pools call these) ------------------------------------------------

    def add(self, name: str, quota: CpuQuota, vcpu: float, threads: int | None = None) -> None:
        """A ready instance of ``vcpu`` planned; it can burst to ``limit_factor ×`` that, but
        never beyond its runtime's threads (a thread uses at most one core)."""
        limit = min(self.capacity, max(vcpu, self.limit_factor * vcpu), threads or self.capacity)
        tenant = Tenant(name, Priority.HIGH, min(vcpu, limit), limit)
        self.instances[name] = _Instance(quota, tenant, vcpu=quota.vcpu)
        self.apply()

    def remove(self, name: str) -> None:
        if self.instances.pop(name, None) is not None:
            self.apply()

    def started(self, name: str) -> None:
        inst = self.instances.get(name)
        if inst is not None:
            inst.busy = True
            self.apply()

    def finished(self, name: str) -> None:
        inst = self.instances.get(name)
        if inst is not None:
            inst.busy = False
            self.apply()

    def answered(self, latency_s: float, slo_s: float) -> None:
        """A request was answered: how much of its SLO it used is the feedback's signal."""
        self.answers += 1
        if slo_s > 0:
            over = vertical.EMERGENCY_OVERFLOW * latency_s / (SLO_TARGET * slo_s)
            self.overflow = over if self.overflow is None else max(self.overflow, over)

    # -- the controller ------------------------------------------------------------------

    def tick(self) -> None:
        """Feedback: the worst request answered since the last tick, or a calm tick when
        nothing was answered and every instance is idle (a busy one with no answer yet
        holds the budget)."""
        busy = any(i.busy for i in self.instances.values())
        if self.overflow is not None or not busy:
            self.budget = vertical.feedback(self.budget, self.overflow or 0.0)
            self.overflow = None
        self.apply()

    def apply(self) -> None:
        """Write every quota the current shares changed."""
        tenants = [i.tenant for i in self.instances.values()]
        busy = {n: i.busy for n, i in self.instances.items()}
        shares = vertical.high_shares(tenants, busy, self.capacity)
        # With the idle class the kernel already gives the group exactly what busy
        # instances leave, at scheduler granularity; the quota then carries the budget.
        left = self.cores if self.idle_class else self.cores - sum(shares.values())
        shares.update(vertical.low_shares([self.low_tenant], left, self.budget))
        for name, inst in self.instances.items():
            want = shares[name] if inst.busy else inst.tenant.limit
            if abs(want - inst.vcpu) > CHANGE_EPS:
                self._write(inst.quota, want)
                inst.vcpu = want
        low = max(shares[LOW], 0.01)
        now = self.clock()
        self.low_vcpu_s += self.low_vcpu * (now - self._since)
        self._since = now
        if abs(low - self.low_vcpu) > CHANGE_EPS:
            self._write(self.low, low)
            self.low_vcpu = low

    def _write(self, quota: CpuQuota, vcpu: float) -> None:
        try:
            quota.set_vcpu(vcpu)
            self.changes += 1
        except OSError as exc:  # an instance's cgroup removed under us: it is leaving
            log.debug("harvest: cannot set %s to %.2f vCPU: %s", quota.path, vcpu, exc)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.tick()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def close(self) -> None:
        """Stop steering; the harvest group keeps the whole capacity for what still runs."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.low.set_vcpu(self.capacity)
        if not self.low.pids():
            self.low.remove()

    def stats(self) -> dict[str, Any]:
        """``/v1/stats`` ``harvest`` object (fields in the README)."""
        now = self.clock()
        mean = (self.low_vcpu_s + self.low_vcpu * (now - self._since)) / max(
            1e-9, now - self.started_at
        )
        instances = {
            n: {"vcpu": round(i.vcpu, 3), "busy": i.busy, "request": i.tenant.request,
                "limit": i.tenant.limit, "cgroup": str(i.quota.path)}
            for n, i in self.instances.items()
        }  # fmt: skip
        return {
            "cgroup": self.path,
            "capacity_vcpu": self.capacity,
            "harvest_cores": self.cores,
            "low_vcpu": round(self.low_vcpu, 3),
            "low_vcpu_mean": round(mean, 3),
            "budget": round(self.budget.scale, 3),
            "emergencies": self.budget.emergencies,
            "recoveries": self.budget.recoveries,
            "quota_writes": self.changes,
            "answers": self.answers,
            "low_pids": len(self.low.pids()),
            "instances": instances,
        }
