"""Serving simulation: replay an arrival trace against a plan and measure cost and SLOs.

Mechanism only. Each group of the plan gets a :class:`GroupServer` whose
:class:`~batchwise.serving.batcher.GroupBatcher` (the buffer loop the live gateway
runs too) asks the group's :class:`MultiSloBatchPolicy` what to dispatch after every
arrival and wake-up, on the simulation clock. A dispatched
batch of ``n`` requests draws its service time ``S`` from the latency model of
``n`` on the group's function and is billed ``batch_cost(fn, S)``. Functions are
serverless with unlimited concurrency: every batch starts at once on its own
instance, so a request's latency is ``(dispatch - arrival) + S`` — unless a finite
:class:`~batchwise.sim.instances.PoolSpec` is given: then batches queue for a group's
instances (and new ones start after a cold-start delay), as on a fixed machine.

Keeping it fast (an hour at ~60 req/s in a few seconds): arrivals are replayed
as one self-rescheduling event chain, so the heap holds one arrival and at most
one wake-up per group; routing is drawn up front with numpy; completions are
written straight into per-request arrays instead of being scheduled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from batchwise.config.plan import GroupPlan, Plan
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.errors import ConfigError
from batchwise.perf.cfs import instance_room, instance_threads
from batchwise.perf.cost import batch_cost
from batchwise.perf.functions import Function, function_from_spec
from batchwise.perf.idle import idle_factor
from batchwise.perf.latency import LatencyModel, unthrottled
from batchwise.perf.service import draw_service_time
from batchwise.scaling.instances import instances_needed
from batchwise.serving.batcher import GroupBatcher
from batchwise.serving.batching import MultiSloBatchPolicy, Pending
from batchwise.serving.group_core import GroupCore
from batchwise.sim.core import Environment, SimTimer
from batchwise.sim.instances import InstancePool, PoolSpec
from batchwise.traces.base import ArrivalTrace

SLO_EPSILON_S = 1e-9
"""A request violates its SLO when its latency exceeds ``slo + SLO_EPSILON_S`` (seconds)."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class MergedArrivals:
    """All apps' arrivals in one time-ordered stream; a request's id is its position.

    Invariants: ``times`` is sorted ascending; ``codes[i]`` indexes ``apps``; ties
    between apps are broken by app order (stable sort), so ids are deterministic.
    """

    apps: tuple[str, ...]
    times: np.ndarray  # arrival time of each request (s)
    codes: np.ndarray  # app index of each request
    duration_s: float

    @staticmethod
    def from_trace(trace: ArrivalTrace) -> MergedArrivals:
        apps = tuple(trace.arrivals)
        parts = [np.asarray(trace.arrivals[a], dtype=float) for a in apps]
        times = np.concatenate(parts) if parts else np.empty(0)
        codes = np.repeat(np.arange(len(apps)), [len(p) for p in parts])
        order = np.argsort(times, kind="stable")
        return MergedArrivals(apps, times[order], codes[order], float(trace.duration_s))

    def __len__(self) -> int:
        return len(self.times)

    def present_apps(self) -> list[str]:
        """Apps with at least one request, in app order."""
        counts = np.bincount(self.codes, minlength=len(self.apps))
        return [a for a, c in zip(self.apps, counts, strict=True) if c > 0]


class ServeLog:
    """Per-request outcomes indexed by request id, written once when its batch dispatches."""

    def __init__(self, n_requests: int) -> None:
        self.done_s = np.full(n_requests, np.nan)  # completion time (s); NaN until served
        self.batch_of = np.full(n_requests, -1, dtype=np.int64)  # id of the serving batch
        self.batch_sizes: list[int] = []  # size of each batch, by batch id
        self.rejected = np.zeros(n_requests, dtype=bool)  # refused by admission (finite mode)

    def reject(self, request_id: int) -> None:
        self.rejected[request_id] = True

    def record_batch(self, batch: Sequence[Pending], done_s: float) -> None:
        batch_id = len(self.batch_sizes)
        self.batch_sizes.append(len(batch))
        ids = [p.request_id for p in batch]
        self.done_s[ids] = done_s
        self.batch_of[ids] = batch_id

    def check_complete(self) -> None:
        """Every request must have been served; a gap is a simulator bug, so fail loudly."""
        missing = int((np.isnan(self.done_s) & ~self.rejected).sum())
        if missing:
            raise RuntimeError(f"{missing} requests were never dispatched")


# --------------------------------------------------------------------------- mechanism


class GroupServer:
    """One group: the shared :class:`GroupBatcher` on the simulation clock, whose sink
    draws each batch's service time and bills it (the simulator's only own part).

    In finite mode the group makes the gateway's decisions with the gateway's code
    (:class:`~batchwise.serving.group_core.GroupCore`): timeouts fitted to a service model
    calibrated by the batches served, deadline-aware admission on the replay of its
    queue (refused requests are not served and count apart) and the learned wait
    stretch; serverless, it batches with the plan's timeouts and admits everything."""

    def __init__(
        self,
        env: Environment,
        group: GroupPlan,
        latency: LatencyModel,
        prices: PriceBook,
        rng: np.random.Generator,
        log: ServeLog,
        pool: PoolSpec | None = None,
        profile: ModelProfile | None = None,
    ) -> None:
        self.group = group
        self.fn = function_from_spec(group.function)
        cpu = self.fn.kind == "cpu"
        self.pool: InstancePool | None = None  # None: serverless
        if pool is not None:
            warm = None
            if pool.autoscale and pool.plan_start:  # as live: sized for the planned load
                start = instances_needed(sum(group.rates.values()), group.expected_batch_size,
                                         lambda b: latency.avg(self.fn, b))  # fmt: skip
                cores = pool.cores if pool.cores is not None else float(os.cpu_count() or 1)
                room = instance_room(self.fn.vcpu, instance_threads(self.fn.vcpu))
                warm = min(start, max(1, int(cores // room + 1e-9)) if cpu else start)
            self.pool = InstancePool(pool, self.fn.vcpu if cpu else None, warm)
        sizes = range(1, group.batch_size + 1)
        # Under a CFS quota a batch's work is its time at full speed (threads' vCPU);
        # the quota then decides how long it takes (the profile at vcpu is back to back).
        # A quota above the threads never binds: the work is the threads' time (1.2 vCPU
        # on one thread runs as 1.0; the profile's fit at 1.2 leans on its 1.5-vCPU point,
        # run with two threads, and said 19 ms where one thread takes 23).
        # Where the profile measured that many whole vCPUs, the measured times are the
        # work (:func:`~batchwise.perf.latency.unthrottled`), not the fit through them.
        full = (
            self.fn
            if self.pool is None or not self.pool.quota_model
            else replace(self.fn, vcpu=float(self.pool.threads))
        )
        self._work_avg: list[float] = []  # batch of n at n-1
        self._work_max: list[float] = []
        for n in sizes:
            m = (
                unthrottled(latency.cpu, self.pool.threads, n)
                if full is not self.fn and self.pool is not None and latency.cpu is not None
                else None
            )
            self._work_avg.append(m[0] if m else latency.avg(full, n))
            self._work_max.append(m[1] if m else latency.max(full, n))
        self._overhead_s = 0.0 if pool is None else pool.overhead_s
        self._idle = (
            profile.cpu.idle_slowdown
            if pool is not None
            and pool.idle_slowdown
            and cpu
            and profile is not None
            and profile.cpu is not None
            else None
        )
        self.core: GroupCore | None = None
        if pool is not None:  # a fixed machine: decide as the gateway does
            if profile is None:
                raise ValueError("finite mode needs the model's profile (the service model)")
            self.core = GroupCore(group, profile, self._overhead_s, SimTimer(env), self._serve,
                                  gate=self._gate, order=pool.batch_order,
                                  share=pool.overload_share)  # fmt: skip
            self.batcher = self.core.batcher
        else:
            policy = MultiSloBatchPolicy(group.batch_size, dict(group.timeouts))
            self.batcher = GroupBatcher(policy, SimTimer(env), self._serve)
        self._admission = pool is not None and pool.admission
        self._env = env
        self._prices = prices
        self._rng = rng
        self._log = log
        self._waits: dict[int, float] = {}  # admitted queued request -> its predicted wait
        self.batches = 0
        self.requests = 0
        self.rejected = 0
        self.rescue: Callable[[], bool] | None = None  # autoscaled: promote a warm standby
        self.cost = 0.0
        self.throttled_s = 0.0  # time batches waited for their CFS quota (finite mode)
        self.busy_s = 0.0  # instance-seconds of batches answered (what live bills and scales on)
        self.offered = 0  # requests that arrived, admitted or refused
        self.peak_vcpu = self.fn.vcpu
        self.scale_events = 0
        self._held_at: float | None = None  # since when due work waits for an instance

    @property
    def policy(self) -> MultiSloBatchPolicy:
        return self.batcher.policy

    @property
    def live_fn(self) -> Function:
        """What the instances run as now: the plan's function, or a surge of it."""
        return self.core.live_fn if self.core is not None else self.fn

    def resize(self, vcpu: float) -> None:
        """Every instance at ``vcpu`` (the controller's vertical surge): quotas, service
        model, timeouts and billing follow, as live."""
        assert self.core is not None and self.pool is not None
        self.core.resize_model(vcpu)
        self.pool.resize(vcpu)
        self.peak_vcpu = max(self.peak_vcpu, vcpu)
        self.scale_events += 1

    def submit(self, request_id: int, app: str) -> None:
        """A request of ``app`` arrives now."""
        core, pool = self.core, self.pool
        self.offered += 1
        if self._admission and core is not None and pool is not None:
            now = self._env.now
            queued, free = pool.snapshot(now, core.model.avg)
            slo = self.group.slos[app]
            verdict = core.admit(app, 1, now + slo, core.snapshot(now, queued, free))
            if not verdict.admit and self.rescue is not None and self.rescue():
                queued, free = pool.snapshot(now, core.model.avg)  # as live: a standby serves
                verdict = core.admit(app, 1, now + slo, core.snapshot(now, queued, free))
            if not verdict.admit:
                self.rejected += 1
                self._log.reject(request_id)
                return
            wait = core.learnable_wait(verdict, slo)
            if wait is not None:
                self._waits[request_id] = wait
        self.batcher.submit(request_id, app)

    def _gate(self) -> bool:
        """As live (:meth:`batchwise.serving.pool.GroupPool.can_take`): a batch is formed
        only when an instance is idle; the end of a batch, or a started instance becoming
        ready, kicks the batcher."""
        pool, now = self.pool, self._env.now
        assert pool is not None
        if pool.idle(now):
            return True
        due = self.batcher.earliest_deadline()
        if len(self.batcher) >= self.group.batch_size or (due is not None and due <= now):
            if self._held_at is None:
                self._held_at = now
            ready = pool.grow(now)
            if ready is not None:
                self._env.schedule(ready, self.batcher.kick)
        return False

    def _serve(self, batch: Sequence[Pending]) -> None:
        n = len(batch)
        if self._held_at is not None and self.pool is not None:
            self.pool.queued_s += self._env.now - self._held_at
            self._held_at = None
        work_s = draw_service_time(self._work_avg[n - 1], self._work_max[n - 1], self._rng)
        now = self._env.now
        service_s = work_s
        if self.pool is None:
            done = now + work_s
        else:
            spec, threads = self._idle, self.pool.threads
            slow = None if spec is None else lambda idle_s: idle_factor(spec, threads, n, idle_s)
            start, done = self.pool.run(now, work_s, n, slow)
            if self.pool.throttled or slow is not None:
                service_s = done - start  # billed busy time, throttled periods included
            if self.pool.throttled:
                self.throttled_s += service_s - self.pool.last_work_s
            if self.core is not None:  # the gateway learns when the batch comes back
                waits = [(p.app, self._waits.pop(p.request_id), start - p.arrival_s)
                         for p in batch if p.request_id in self._waits]  # fmt: skip
                self._env.schedule(done, lambda: self._answered(n, service_s, waits))
                self._env.schedule(done, self.batcher.kick)  # the instance is free again
        self.cost += batch_cost(self.live_fn, service_s, self._prices)
        self.batches += 1
        self.requests += n
        self._log.record_batch(batch, done + self._overhead_s)

    def _answered(self, n: int, service_s: float, waits: list[tuple[str, float, float]]) -> None:
        core = self.core
        assert core is not None
        self.busy_s += service_s
        core.served(n, service_s)
        now = self._env.now
        for app, predicted, actual in waits:
            core.learn_wait(app, now, predicted, actual)

    def stats(self) -> GroupStats:
        g = self.group
        return GroupStats(
            apps=tuple(g.apps),
            function=self.fn.describe(),
            batch_size=g.batch_size,
            batches=self.batches,
            requests=self.requests,
            mean_batch_size=self.requests / self.batches if self.batches else 0.0,
            cost=self.cost,
            cost_per_request=self.cost / self.requests if self.requests else 0.0,
            predicted_cost_per_request=g.expected_cost_per_request,
            predicted_mean_batch_size=g.expected_batch_size,
            instances=self.pool.size if self.pool is not None else None,
            mean_queue_s=(self.pool.queued_s / self.batches if self.pool and self.batches else 0.0),
            mean_throttle_s=self.throttled_s / self.batches if self.batches else 0.0,
            mean_idle_slowdown_s=(
                self.pool.idle_extra_s / self.batches if self.pool and self.batches else 0.0
            ),
            rejected=self.rejected,
            peak_vcpu=self.peak_vcpu if self.pool is not None else None,
            scale_events=self.scale_events,
        )


class PlanRunner:
    """Serves one plan: a :class:`GroupServer` per group plus app → group routing.

    An app may be split across groups (e.g. by MBS); each request goes to one of
    its groups at random, weighted by the rate each group takes of that app.
    """

    def __init__(
        self,
        env: Environment,
        plan: Plan,
        latency: LatencyModel,
        prices: PriceBook,
        seed: np.random.SeedSequence,
        log: ServeLog,
        pool: PoolSpec | None = None,
        profile: ModelProfile | None = None,
    ) -> None:
        self.plan = plan
        server_seeds = seed.spawn(len(plan.groups))  # one stream per group: order-independent
        self.servers = [
            GroupServer(env, g, latency, prices, np.random.default_rng(s), log, pool, profile)
            for g, s in zip(plan.groups, server_seeds, strict=True)
        ]
        self.control: Any = None  # the live controller's state (autoscaled finite mode)

    def autoscale(self, env: Environment, pool: PoolSpec, until_s: float) -> None:
        """Size every group with the live controller every second until ``until_s``."""
        from batchwise.sim.autoscale import start_controller

        self.control = start_controller(env, self.plan, self.servers, pool.cores, until_s,
                                        pool.standby)  # fmt: skip

    def _groups_of(self, app: str) -> tuple[np.ndarray, np.ndarray]:
        idx = [i for i, g in enumerate(self.plan.groups) if app in g.apps]
        w = np.array([self.plan.groups[i].rates.get(app, 0.0) for i in idx], dtype=float)
        w = w / w.sum() if w.sum() > 0 else np.full(len(idx), 1.0 / max(len(idx), 1))
        return np.array(idx, dtype=np.int64), w

    def route(
        self, arrivals: MergedArrivals, lo: int, hi: int, rng: np.random.Generator
    ) -> list[int]:
        """Group index for each request ``lo..hi-1``; ConfigError if an app has no group."""
        codes = arrivals.codes[lo:hi]
        present = np.unique(codes)
        missing = [
            arrivals.apps[c] for c in present if not self._groups_of(arrivals.apps[c])[0].size
        ]
        if missing:
            raise ConfigError(f"apps in the trace but not in the plan: {', '.join(missing)}")
        out = np.empty(hi - lo, dtype=np.int64)
        for code in present:
            mask = codes == code
            idx, w = self._groups_of(arrivals.apps[code])
            out[mask] = idx[0] if idx.size == 1 else rng.choice(idx, size=int(mask.sum()), p=w)
        return out.tolist()

    def submit(self, request_id: int, app: str, group: int) -> None:
        self.servers[group].submit(request_id, app)

    def cost(self) -> float:
        return sum(s.cost for s in self.servers)


class ArrivalProcess:
    """Replays merged arrivals as one event chain: only the next arrival sits in the heap."""

    def __init__(self, env: Environment, times: np.ndarray, sink: Callable[[int], None]) -> None:
        self._env = env
        self._times = times.tolist()
        self._sink = sink
        self._next = 0

    def start(self) -> None:
        if self._times:
            self._env.schedule(self._times[0], self._fire)

    def _fire(self) -> None:
        i = self._next
        self._next = i + 1
        self._sink(i)
        if self._next < len(self._times):
            self._env.schedule(self._times[self._next], self._fire)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class AppStats:
    """Latency and SLO outcome of one app's requests."""

    requests: int
    slo_s: float
    slo_violations: int
    slo_violation_rate: float  # of admitted requests
    mean_latency_s: float  # latencies: of admitted requests (NaN/null if none was)
    p50_latency_s: float
    p99_latency_s: float
    max_latency_s: float
    mean_batch_size: float  # mean size of the distinct batches that served this app
    rejected: int = 0  # refused by admission (finite mode)
    admitted_fraction: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class GroupStats:
    """What one group served and what it cost, beside the plan's prediction."""

    apps: tuple[str, ...]
    function: str
    batch_size: int
    batches: int
    requests: int
    mean_batch_size: float
    cost: float
    cost_per_request: float
    predicted_cost_per_request: float  # the plan's expected_cost_per_request
    predicted_mean_batch_size: float  # the plan's expected_batch_size
    instances: int | None = None  # most live at once (None: serverless, unbounded)
    mean_queue_s: float = 0.0  # mean wait of a batch for a free instance (s)
    mean_throttle_s: float = 0.0  # mean time a batch waited for its CFS quota (s)
    mean_idle_slowdown_s: float = 0.0  # mean time a batch ran longer after an idle spell (s)
    rejected: int = 0  # requests refused by admission (finite mode)
    peak_vcpu: float | None = None  # largest vCPU per instance (a surge; None: serverless)
    scale_events: int = 0  # instance counts and sizes the controller changed (--autoscale)

    def to_dict(self) -> dict[str, Any]:
        d = {k: _plain(v) for k, v in self.__dict__.items()}
        d["apps"] = list(self.apps)
        return d


@dataclass(frozen=True)
class SimResult:
    """Outcome of :func:`simulate`. ``latencies`` holds raw per-request latencies (s)."""

    algorithm: str
    model: str
    currency: str
    seed: int
    duration_s: float
    requests: int
    total_cost: float
    cost_per_request: float
    predicted_cost_per_request: float  # rate-weighted expected cost per request of the plan
    slo_violation_rate: float
    apps: dict[str, AppStats]  # apps with at least one request
    groups: list[GroupStats]  # in plan order
    latencies: dict[str, np.ndarray] = field(repr=False, compare=False)
    rejected: int = 0  # requests refused by admission (finite mode); the rest were served

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no raw latencies).

        Keys: algorithm, model, currency, seed, duration_s, requests, rejected,
        admitted_fraction, total_cost, cost_per_request (per admitted request),
        predicted_cost_per_request, slo_violation_rate (of admitted requests),
        apps {name: {requests, slo_s, slo_violations, slo_violation_rate,
        mean_latency_s, p50_latency_s, p99_latency_s, max_latency_s,
        mean_batch_size, rejected, admitted_fraction}}, groups [{apps, function,
        batch_size, batches, requests, mean_batch_size, cost, cost_per_request,
        predicted_cost_per_request, predicted_mean_batch_size, instances, mean_queue_s,
        mean_throttle_s, mean_idle_slowdown_s, rejected}]. Non-finite floats become null.
        """
        head = {
            k: _plain(getattr(self, k))
            for k in (
                "algorithm", "model", "currency", "seed", "duration_s", "requests", "rejected",
                "total_cost", "cost_per_request", "predicted_cost_per_request",
                "slo_violation_rate",
            )
        }  # fmt: skip
        head["admitted_fraction"] = (
            (self.requests - self.rejected) / self.requests if self.requests else 1.0
        )
        head["apps"] = {a: s.to_dict() for a, s in self.apps.items()}
        head["groups"] = [g.to_dict() for g in self.groups]
        return head


def _plain(v: object) -> object:
    """numpy scalars → Python ints/floats; non-finite floats → None (strict JSON has no inf)."""
    if isinstance(v, np.integer | int) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, np.floating | float):
        return float(v) if np.isfinite(v) else None
    return v


def plan_slos(plan: Plan) -> dict[str, float]:
    """Each app's SLO in the plan (the tightest, should groups disagree)."""
    out: dict[str, float] = {}
    for g in plan.groups:
        for app, slo in g.slos.items():
            out[app] = min(slo, out.get(app, slo))
    return out


def predicted_cost_per_request(plan: Plan) -> float:
    """Rate-weighted ``expected_cost_per_request`` over the plan's groups."""
    total = sum(g.total_rate for g in plan.groups)
    if total <= 0:
        return 0.0
    return sum(g.expected_cost_per_request * g.total_rate for g in plan.groups) / total


def request_latencies(arrivals: MergedArrivals, log: ServeLog) -> np.ndarray:
    return log.done_s - arrivals.times


def violations(
    arrivals: MergedArrivals, latencies: np.ndarray, slos: dict[str, float]
) -> np.ndarray:
    """Boolean per request: latency > its app's SLO + epsilon."""
    slo_of_code = np.array([slos.get(a, np.inf) for a in arrivals.apps], dtype=float)
    return latencies > slo_of_code[arrivals.codes] + SLO_EPSILON_S


def app_stats(
    arrivals: MergedArrivals, log: ServeLog, slos: dict[str, float]
) -> tuple[dict[str, AppStats], dict[str, np.ndarray]]:
    """Per-app stats and raw latencies (of admitted requests), for apps with a request."""
    lat = request_latencies(arrivals, log)
    bad = violations(arrivals, lat, slos)
    sizes = np.asarray(log.batch_sizes, dtype=float)
    stats: dict[str, AppStats] = {}
    raw: dict[str, np.ndarray] = {}
    for code, app in enumerate(arrivals.apps):
        mask = arrivals.codes == code
        n = int(mask.sum())
        if n == 0:
            continue
        served = mask & ~log.rejected
        k = int(served.sum())
        x = lat[served]
        p50, p99 = np.percentile(x, [50, 99]) if k else (np.nan, np.nan)
        v = int(bad[served].sum())
        stats[app] = AppStats(
            requests=n,
            slo_s=float(slos.get(app, np.inf)),
            slo_violations=v,
            slo_violation_rate=v / k if k else 0.0,
            mean_latency_s=float(x.mean()) if k else np.nan,
            p50_latency_s=float(p50),
            p99_latency_s=float(p99),
            max_latency_s=float(x.max()) if k else np.nan,
            mean_batch_size=float(sizes[np.unique(log.batch_of[served])].mean()) if k else np.nan,
            rejected=n - k,
            admitted_fraction=k / n,
        )
        raw[app] = x
    return stats, raw


# --------------------------------------------------------------------------- entry point


def simulate(
    plan: Plan,
    trace: ArrivalTrace,
    profile: ModelProfile,
    prices: PriceBook,
    seed: int = 0,
    pool: PoolSpec | None = None,
) -> SimResult:
    """Serve ``trace`` with ``plan`` in virtual time; measure cost per request and SLOs.

    ``pool``: finite instances per group (queueing, cold starts); None: serverless.

    Requests still buffered when the trace ends are served at their deadlines (the
    events run to completion). Raises ConfigError if the trace has requests of an
    app the plan does not serve. Equal seeds give identical results.
    """
    arrivals = MergedArrivals.from_trace(trace)
    missing = sorted(set(arrivals.present_apps()) - set(plan.app_rates()))
    if missing:
        raise ConfigError(f"apps in the trace but not in the plan: {', '.join(missing)}")
    env = Environment()
    log = ServeLog(len(arrivals))
    route_seed, serve_seed = np.random.SeedSequence(seed).spawn(2)
    latency = LatencyModel(profile.cpu, profile.gpu)
    runner = PlanRunner(env, plan, latency, prices, serve_seed, log, pool, profile)
    if pool is not None and pool.autoscale:
        runner.autoscale(env, pool, arrivals.duration_s)
    group_of = runner.route(arrivals, 0, len(arrivals), np.random.default_rng(route_seed))
    app_of = [arrivals.apps[c] for c in arrivals.codes.tolist()]
    submit = runner.submit
    ArrivalProcess(env, arrivals.times, lambda i: submit(i, app_of[i], group_of[i])).start()
    env.run()
    log.check_complete()

    slos = plan_slos(plan)
    stats, raw = app_stats(arrivals, log, slos)
    n = len(arrivals)
    admitted = n - int(log.rejected.sum())
    total_cost = runner.cost()
    n_bad = sum(s.slo_violations for s in stats.values())
    return SimResult(
        algorithm=plan.algorithm,
        model=plan.model,
        currency=plan.currency,
        seed=seed,
        duration_s=arrivals.duration_s,
        requests=n,
        total_cost=total_cost,
        cost_per_request=total_cost / admitted if admitted else 0.0,
        predicted_cost_per_request=predicted_cost_per_request(plan),
        slo_violation_rate=n_bad / admitted if admitted else 0.0,
        apps=stats,
        groups=[s.stats() for s in runner.servers],
        latencies=raw,
        rejected=n - admitted,
    )
