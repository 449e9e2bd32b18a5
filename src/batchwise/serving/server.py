"""The serving core: a plan's groups, each a shared ``GroupBatcher`` feeding a ``GroupPool``.

One request may carry several records (the protocol's batch dimension); each record
is one item of the plan's batches, and the request completes when all of its items
have. Admission (:mod:`batchwise.serving.admission`) runs before anything is
buffered; a lost batch (its instance died) is retried for the items whose SLO still
allows it, and the others are answered 503 — never a hang, never a silent loss: every
admitted request ends with outputs or an error, at the latest at its safety timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from batchwise.config.plan import GroupPlan, Plan
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.errors import ConfigError
from batchwise.perf.cfs import instance_room, instance_threads
from batchwise.perf.cost import batch_cost
from batchwise.resources import cpu_quota
from batchwise.scaling import instances as scaling_instances
from batchwise.serving import admission
from batchwise.serving.batching import Pending
from batchwise.serving.deadlines import DEFAULT_OVERHEAD_S
from batchwise.serving.group_core import GroupCore
from batchwise.serving.instance import InstanceConfig
from batchwise.serving.loop_lag import LAG_HOPS, SHED_FRACTION, LoopLag
from batchwise.serving.metrics import ServingMetrics
from batchwise.serving.pool import Batch, GroupPool, InstanceLost, ModelError
from batchwise.serving.service_model import ServiceModel
from batchwise.serving.timer import AsyncioTimer

log = logging.getLogger("batchwise.serving")

SAFETY_TIMEOUT_FACTOR = 20.0
"""An admitted request still unanswered after this many SLOs (+ a start-up allowance)
is answered 504: something is broken, and a client must never wait forever."""
RAY_MAX_INSTANCES = 64
"""Instances per group on Ray unless ``--max-instances`` says otherwise."""


class Rejected(Exception):
    """Admission refused: 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(Exception):
    """The request could not be served in time (instance lost, shut down): 503."""


class UnknownApp(KeyError):
    """No app of that name in the plan: 404."""


@dataclass(frozen=True)
class RunnerRef:
    """The model every instance runs: a built-in, an ``.onnx`` file or ``module:Class``."""

    model: str
    options: dict[str, Any] = field(default_factory=dict)
    base: str = "."


@dataclass(frozen=True)
class ServeOptions:
    instances: int | None = None  # per group; None: sized from the plan's load
    max_instances: int | None = None  # cap per group (None: what the cores allow)
    admission: bool = True
    threads: int | None = None  # runtime threads per instance (default: round(vCPU))
    overhead_s: float = DEFAULT_OVERHEAD_S  # HTTP and IPC per request, kept out of timeouts
    autoscale: bool = True  # instances per group follow utilisation, queue and refusals
    scale_interval_s: float = 1.0
    scale_down_delay_s: float = 15.0  # a smaller group must be wanted this long
    replan_window_s: float | None = 60.0  # re-plan from observed rates (None: never)
    rate_estimator: str = "max"  # last | ewma | max (see batchwise.scaling.rates)
    rate_floor: float = 1.0  # re-plan for at least this fraction of the declared rates
    planner: Any = None  # Callable[[list[AppSpec]], Plan] for re-planning (None: no re-plan)
    backend: str = "local"  # where instances run: local processes or Ray actors
    ray_address: str | None = None  # Ray cluster (backend ray; None: RAY_ADDRESS or local)
    harvest: bool = False  # lend idle CPU to a low-priority cgroup (serving.harvest)
    surge: bool = True  # groups bound by the cores take the free vCPU (scaling.surge)
    batch_order: str = "arrival"  # arrival | deadline (serving.batcher)
    overload_share: str = "first-come"  # first-come | even (serving.group_core.SHARES)
    standby: int = 1  # warm instances per group kept beside the serving ones (see standby_for)


@dataclass
class Call:
    """One admitted request: its items' outputs and the future the HTTP handler awaits."""

    app: str
    arrival: float
    deadline: float
    outputs: list[Any]
    remaining: int
    future: asyncio.Future
    predicted_wait: float | None = None  # admitted queued: the predicted wait for an instance


@dataclass
class Item:
    call: Call
    index: int
    record: Any


def instances_needed(group: GroupPlan, model: ServiceModel) -> int:
    """Instances that keep the planned load at the target utilisation (at least 1)."""
    return scaling_instances.instances_needed(sum(group.rates.values()),
                                              group.expected_batch_size, model.avg)  # fmt: skip


class GroupRuntime(GroupCore):
    """One group: the shared decisions (:class:`GroupCore`: batcher, calibrated service
    model, timeouts, admission) plus its instances, calls and billing."""

    def __init__(self, index: int, plan: GroupPlan, server: Server, epoch: int = 1) -> None:
        self.index, self.server = index, server
        super().__init__(plan, server.profile, server.options.overhead_s, server.timer,
                         self._dispatch, gate=lambda: self.pool.can_take(),
                         order=server.options.batch_order,
                         share=server.options.overload_share)  # fmt: skip
        self.name = f"g{index}" if epoch == 1 else f"e{epoch}g{index}"
        self.rejected = 0  # refusals by admission (the autoscaler reads deltas)
        self.offered_items = 0  # items that arrived, admitted or refused (deltas, too)
        threads = server.options.threads or instance_threads(self.fn.vcpu)
        cfg = InstanceConfig(server.runner.model, dict(server.runner.options),
                             server.runner.base, vcpu=self.fn.vcpu, threads=threads,
                             warmup_batch=plan.batch_size)  # fmt: skip
        self.pool: GroupPool
        if server.options.backend == "ray":
            from batchwise.serving.ray_pool import RayGroupPool

            self.pool = RayGroupPool(self.name, cfg, self._lost, self._free_at, server.timer.now,
                                     address=server.options.ray_address)  # fmt: skip
        else:
            self.pool = GroupPool(self.name, cfg, server.sock_dir, self._lost, self._free_at,
                                  server.timer.now)  # fmt: skip
            self.pool.watcher = server.harvester
        self.pool.on_free = self.batcher.kick  # batches are formed when an instance frees
        self.batch_ids = itertools.count(1)
        self.busy_s = 0.0
        self.cost = 0.0

    def room_vcpu(self) -> float:
        """Cores one instance of the plan's size takes from the machine."""
        return instance_room(self.fn.vcpu, self.pool.cfg.threads)

    def resize(self, vcpu: float) -> None:
        """Run every instance at ``vcpu`` (a vertical surge, or back to the plan): quotas,
        the service model (hence admission and timeouts) and billing follow."""
        self.resize_model(vcpu)
        self.pool.resize(vcpu)

    # -- admission ----------------------------------------------------------------------
    def load(self, now: float) -> admission.GroupLoad:
        return self.snapshot(now, [len(b.items) for b in self.pool.queue],
                             self.pool.free_times(now, self.pool.cold_start_s))  # fmt: skip

    def queue_depth(self) -> int:
        return len(self.batcher) + sum(len(b.items) for b in self.pool.queue)

    def _free_at(self, batch: Batch) -> float:
        return batch.sent_at + self.model.avg(len(batch.items))

    # -- batches ------------------------------------------------------------------------
    def _dispatch(self, pending: Sequence[Pending]) -> None:
        items = [self.server.items.pop(p.request_id) for p in pending]
        self._send(items, front=False)

    def _send(self, items: list[Item], front: bool) -> None:
        future = asyncio.get_running_loop().create_future()
        batch = Batch(next(self.batch_ids), items, future)
        future.add_done_callback(lambda f, b=batch: self._done(b, f))
        self.server.metrics.batch_size.labels(self.name).observe(len(items))
        if front:
            self.pool.queue.appendleft(batch)
            self.pool.pump()
        else:
            self.pool.submit(batch)

    def _done(self, batch: Batch, fut: asyncio.Future) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            for it in batch.items:
                _fail(it.call, exc)
            return
        outputs, busy = fut.result()
        self.busy_s += busy
        cost = batch_cost(self.live_fn, busy, self.server.prices)
        self.cost += cost
        self.server.metrics.cost.labels(self.name).inc(cost)
        self.served(len(batch.items), busy)
        for it, out in zip(batch.items, outputs, strict=True):
            call = it.call
            if call.future.done():
                continue
            call.outputs[it.index] = out
            call.remaining -= 1
            if call.remaining == 0:
                if call.predicted_wait is not None:
                    self.learn_wait(call.app, self.server.timer.now(), call.predicted_wait,
                                    batch.sent_at - call.arrival)  # fmt: skip
                call.future.set_result(call.outputs)

    def _lost(self, batch: Batch) -> None:
        """Its instance died: retry items whose deadline allows one more run, fail the rest."""
        self.server.metrics.instance_deaths.labels(self.name).inc()
        now = self.server.timer.now()
        retry, n = [], len(batch.items)
        for it in batch.items:
            if it.call.future.done():
                continue
            if now + self.model.worst(n) <= it.call.deadline and batch.attempts < 3:
                retry.append(it)
            else:
                _fail(it.call, Unavailable("the instance serving this request died and its "
                                           "SLO leaves no time for a retry"))  # fmt: skip
        if retry:
            self._send(retry, front=True)


def _fail(call: Call, exc: BaseException) -> None:
    if not call.future.done():
        call.future.set_exception(exc)


class Server:
    """Serves a plan: routes each app's requests to its groups, admits, batches, answers."""

    def __init__(self, plan: Plan, profile: ModelProfile, prices: PriceBook, runner: RunnerRef,
                 options: ServeOptions | None = None) -> None:  # fmt: skip
        self.plan, self.profile, self.prices, self.runner = plan, profile, prices, runner
        self.options = options or ServeOptions()
        self.epoch = 1
        self.started_at = time.time()
        self.history: list[dict[str, Any]] = []
        self.items: dict[int, Item] = {}
        self._ids = itertools.count(1)
        self.metrics = ServingMetrics()
        self.sock_dir = ""
        self.groups: list[GroupRuntime] = []
        self.routes: dict[str, list[tuple[GroupRuntime, float]]] = {}
        self.slos: dict[str, float] = {}
        self._credit: dict[str, list[float]] = {}
        self.closing = False
        self.lag = LoopLag()  # how far behind the event loop runs (charged to requests)
        self.arrivals: dict[str, int] = {}  # per app, this re-planning window (admitted or not)
        self.harvester: Any = None  # serving.harvest.Harvester under --harvest
        self.controller: Any = None  # serving.control.Controller, once started
        self._gateway_cgroup: cpu_quota.CpuQuota | None = None
        if self.options.harvest:
            self.harvester = make_harvester(self.options)

    @property
    def apps(self) -> list[str]:
        return list(self.routes)

    async def start(self) -> None:
        """Start every group's instances and wait until each group has a warm one."""
        self.timer = AsyncioTimer()
        if self.options.backend == "local":  # the gateway wins a core from its instances
            self._gateway_cgroup = cpu_quota.join_gateway()
        self.lag.start()
        if self.harvester is not None:
            self.harvester.start()
        self.sock_dir = tempfile.mkdtemp(prefix="batchwise-serve-")
        groups = self.build_groups(self.plan, self.epoch)
        self._start_groups(groups, "start")
        await asyncio.gather(*(g.pool.wait_ready(1) for g in groups))
        self.switch_to(groups, self.plan)
        from batchwise.serving.control import Controller

        self.controller = Controller(self)
        self.controller.start()

    def build_groups(self, plan: Plan, epoch: int) -> list[GroupRuntime]:
        return [GroupRuntime(i, g, self, epoch) for i, g in enumerate(plan.groups)]

    def max_instances(self, g: GroupRuntime) -> int:
        """Most instances of ``g``: ``--max-instances``, else what this machine's cores hold
        (on Ray: RAY_MAX_INSTANCES, since pending actors are what makes a cluster grow)."""
        if self.options.max_instances:
            return self.options.max_instances
        if self.options.backend == "ray":
            return RAY_MAX_INSTANCES
        return max(1, math.floor(instance_cores() / g.room_vcpu() + 1e-9))

    def standby_for(self, g: GroupRuntime, serving: int) -> int:
        """Warm standbys ``g`` keeps beside ``serving`` instances: ``--standby``, no more
        than could be promoted within its instance limit; none where they would hold what
        they do not use — Ray actors (a cluster's CPUs are booked per actor), harvesting
        (idle CPU is lent) — or could never serve (fixed ``--instances``, no autoscaling)."""
        o = self.options
        if o.backend != "local" or o.harvest or o.instances is not None or not o.autoscale:
            return 0
        return min(o.standby, max(0, self.max_instances(g) - serving))

    def _start_groups(self, groups: list[GroupRuntime], action: str) -> None:
        for g in groups:
            n = self.options.instances or instances_needed(g.plan, g.model)
            k = min(n, self.max_instances(g))
            g.pool.scale_to(k, self.standby_for(g, k))
            self._record(action, f"group {g.name} ({', '.join(g.plan.apps[:6])}): {k} "
                         f"instance(s) of {g.fn.describe()}, batch {g.plan.batch_size} "
                         f"(planned load needs {n})")  # fmt: skip

    def switch_to(self, groups: list[GroupRuntime], plan: Plan) -> list[GroupRuntime]:
        """Route every new request to ``groups`` from now on; returns the previous groups.

        Requests already admitted stay with the groups that admitted them (their items
        are in those batchers and pools), so a switch fails nothing in flight."""
        old = self.groups
        routes: dict[str, list[tuple[GroupRuntime, float]]] = {}
        for g in groups:
            for app in g.plan.apps:
                routes.setdefault(app, []).append((g, g.plan.rates[app]))
                self.slos[app] = g.plan.slos[app]
        self.groups, self.plan, self.routes = groups, plan, routes
        self._credit = {app: [0.0] * len(r) for app, r in routes.items()}
        self.metrics.bind(self)
        return old

    async def retire(self, groups: list[GroupRuntime]) -> None:
        """Old groups: dispatch what they buffer, let their instances finish, stop them."""
        for g in groups:
            g.batcher.flush()
        await asyncio.gather(*(g.pool.close() for g in groups))
        self.metrics.unbind(groups)

    def _record(self, action: str, reason: str) -> None:
        entry = {"time": time.time(), "epoch": self.epoch, "action": action, "reason": reason}
        self.history.append(entry)
        log.info("%s: %s", action, reason)

    def ready(self) -> bool:
        return bool(self.groups) and all(g.pool.ready_count() > 0 for g in self.groups)

    def schema(self) -> tuple[Any, Any]:
        for g in self.groups:
            if g.pool.schema is not None:
                return g.pool.schema
        raise Unavailable("no instance is ready yet")

    def _route(self, app: str) -> GroupRuntime:
        """Smooth weighted round robin over the groups that take a share of ``app``."""
        routes = self.routes.get(app)
        if routes is None:
            raise UnknownApp(app)
        if len(routes) == 1:
            return routes[0][0]
        credit = self._credit[app]
        total = sum(w for _, w in routes)
        for i, (_, w) in enumerate(routes):
            credit[i] += w
        best = max(range(len(routes)), key=credit.__getitem__)
        credit[best] -= total
        return routes[best][0]

    async def infer(self, app: str, records: list[Any]) -> list[Any]:
        """Outputs for ``records`` of ``app``, within its SLO or an exception saying why not."""
        group = self._route(app)
        self.arrivals[app] = self.arrivals.get(app, 0) + 1
        if self.closing:
            raise Unavailable("the server is shutting down")
        group.offered_items += len(records)
        now = self.timer.now()
        slo = self.slos[app]
        deadline = now + slo - LAG_HOPS * self.lag.lag_s()  # what the loop's queue took
        wait = None
        if self.options.admission:
            verdict = group.admit(app, len(records), deadline, group.load(now))
            if (not verdict.admit and self.controller is not None
                    and self.controller.rescue(group, now)):  # fmt: skip
                verdict = group.admit(app, len(records), deadline, group.load(now))
            wait = group.learnable_wait(verdict, slo)
            if not verdict.admit:
                group.rejected += 1
                self.metrics.rejected.labels(app, "deadline").inc()
                raise Rejected(f"app {app!r}: predicted to finish in "
                               f"{verdict.finish_s - now:.3f} s, over its SLO of {slo} s",
                               verdict.retry_after_s)  # fmt: skip
        fut = asyncio.get_running_loop().create_future()
        call = Call(app, now, deadline, [None] * len(records), len(records), fut, wait)
        for i, rec in enumerate(records):
            rid = next(self._ids)
            self.items[rid] = Item(call, i, rec)
            group.batcher.submit(rid, app)
        limit = slo * SAFETY_TIMEOUT_FACTOR + 2 * group.pool.cold_start_s + 10
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout=limit)
        except TimeoutError:
            _fail(call, Unavailable("timed out"))
            raise Unavailable(f"no answer within {limit:.1f} s (safety timeout)") from None

    def observe(self, app: str, seconds: float, code: int, admitted: bool = True) -> None:
        slo = self.slos.get(app)
        self.metrics.observe(app, seconds, code, slo, admitted)
        if self.harvester is not None and code == 200 and slo:
            self.harvester.answered(seconds, slo)

    def plan_doc(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batch_order": self.options.batch_order,
            "overload_share": self.options.overload_share,
            "plan": self.plan.model_dump(mode="json"),
            "groups": [
                {
                    "group": g.name,
                    "apps": g.plan.apps,
                    "function": g.fn.describe(),
                    "batch_size": g.plan.batch_size,
                    "instances": g.pool.live_count(),
                    "vcpu_per_instance": g.live_fn.vcpu,
                    "ready": g.pool.ready_count(),
                    "target": g.pool.target,
                    "standby": g.pool.standby_count(),
                    "cpu_quota": g.pool.cfg.mechanism
                    if not g.pool.members
                    else next(iter(g.pool.members.values())).quota.mechanism,
                    "service_factor": round(g.model.factor, 4),
                    "service_tail": round(g.model.tail, 4),
                    "queue_stretch": round(g.queue_stretch(self.timer.now()), 4),
                }
                for g in self.groups
            ],
            "history": self.history,
        }

    def overloaded(self, app: str) -> str | None:
        """Why ``app``'s requests are refused before they are even parsed, or None.

        When the event loop runs so late that a request has lost ``SHED_FRACTION`` of
        its SLO before its handler runs, parsing it only makes the loop later."""
        behind = LAG_HOPS * self.lag.lag_s()
        slo = self.slos.get(app)
        if slo is None or behind <= SHED_FRACTION * slo:
            return None
        self.metrics.rejected.labels(app, "overload").inc()
        return (f"app {app!r}: the gateway is overloaded (requests wait {behind * 1000:.0f} ms "
                f"before admission, over {SHED_FRACTION:.0%} of the {slo} s SLO)")  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """Counters a load generator reads before and after a run (cost, CPU, busy time)."""
        pids = [p for g in self.groups for p in g.pool.pids()]
        return {
            "epoch": self.epoch,
            "currency": self.prices.currency,
            "cpu_s": _cpu_seconds(pids),
            "loop_lag_s": round(self.lag.lag_s(), 4),
            "groups": {
                g.name: {
                    "busy_s": g.busy_s,
                    "cost": g.cost,
                    "batches": g.batches,
                    "instances": g.pool.live_count(),
                    "deaths": g.pool.deaths,
                }
                for g in self.groups
            },
            "apps": self.metrics.app_stats(),
            "predicted_cost_per_request": self.plan.expected_cost_per_request,
            "harvest": None if self.harvester is None else self.harvester.stats(),
        }

    async def close(self) -> None:
        """Graceful: stop admitting, flush buffers, let instances finish, then stop them."""
        self.closing = True
        await self.lag.stop()
        controller = getattr(self, "controller", None)
        if controller is not None:
            await controller.stop()
        for g in self.groups:
            g.batcher.flush()
        await asyncio.gather(*(g.pool.close() for g in self.groups))
        if self.harvester is not None:
            await self.harvester.close()
        for item in list(self.items.values()):
            _fail(item.call, Unavailable("the server shut down"))
        self.items.clear()
        if self.sock_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
        cpu_quota.leave_gateway(self._gateway_cgroup)
        self._gateway_cgroup = None


def make_harvester(options: ServeOptions) -> Any:
    """The CPU enforcer for ``--harvest``: instances share the cores; the harvest group
    may have every core they leave."""
    from batchwise.serving.harvest import Harvester

    if options.backend != "local":
        raise ConfigError("--harvest steers local cgroups; it cannot be used with --backend "
                          f"{options.backend}", field="--harvest")  # fmt: skip
    return Harvester(instance_cores(), cores=float(os.cpu_count() or 1))


def instance_cores() -> float:
    """vCPUs this machine gives serving instances: all its cores.

    No reserve is held back for the gateway: its cgroup outweighs its instances' 16:1
    (:func:`batchwise.resources.cpu_quota.join_gateway`), which protects it better than
    a reserve did and wastes nothing. Measured (MiniLM, 4 apps, 2 cores, a 1-vCPU plan):
    a 0.5-vCPU reserve left one instance, 7x Poisson admitted 91 %; without it two
    instances admitted 99.4 %, all on time, refusals p99 4.3 ms (bench/RESULTS.md §6c)."""
    return float(os.cpu_count() or 1)


def _cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) of this process, its ended children and live ``pids``.

    Ended instances count through the kernel's children rusage (they were waited for),
    so instances that died or were drained during a run are not lost from the total.
    """
    import psutil

    me = psutil.Process().cpu_times()
    total = me.user + me.system + me.children_user + me.children_system
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


__all__ = ["InstanceLost", "ModelError", "Rejected", "RunnerRef", "ServeOptions", "Server",
           "Unavailable", "UnknownApp"]  # fmt: skip
