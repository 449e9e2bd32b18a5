"""GPU serving under a requests-per-second trace, with low-priority work on the same GPUs.

The mechanism behind ``batchwise gpu coscale``: one inference function scaled over
GPUs, each GPU also running one worker of a low-priority co-runner (a training or
batch job that soaks up what inference leaves). It runs on the shared event engine
(:class:`batchwise.sim.core.Environment`) and only *asks* the policies:
:mod:`batchwise.gpu.vertical` for shares, :mod:`batchwise.gpu.horizontal` for
instance counts. Five ways to run the same trace (:class:`Mode`):

========================  ===============================================================
``dilu``                  vertical controller every tick + lazy horizontal scaler sized at
                          the request's throughput (bursts up to the limit are headroom)
``horizontal-only``       share fixed at the request (co-runner gets the rest) + the lazy
                          scaler sized at the request's throughput
``static-request``        share fixed at the request, instances fixed for the trace's peak
``static-limit``          share fixed at the limit, instances fixed for the trace's peak
``exclusive``             a whole GPU per instance, no co-runner, lazy scaler at full GPU
========================  ===============================================================

Model, documented because every figure depends on it:

* Requests arrive as a Poisson process whose rate is the trace's value for that second
  (× ``rps_scale``); each goes to the ready instance with the fewest outstanding items.
  An idle ready instance starts a batch of what is queued, up to its batch size.
* A batch of ``k`` items at effective share ``e`` progresses at ``1 / latency(k, e)``
  (:class:`~batchwise.gpu.latency_grid.LatencyGrid`), slowed by ``1 + interference ×
  e_low`` while the co-runner holds ``e_low`` (memory bandwidth and caches are not
  partitioned by SM share — this is what the vertical controller's feedback reacts to).
  When the shares handed out exceed the GPU, each gets its share ÷ their sum.
* Shares change at tick boundaries (:data:`~batchwise.gpu.vertical.TICK_S`), computed by
  the controller from who is busy; an instance that wakes between ticks runs at its
  request (guaranteed) until the next tick. Progress is integrated exactly between
  changes, so batch times are not rounded to ticks.
* The co-runner makes ``throughput(batch, e_low)`` items per second of its own grid; its
  work is reported in *GPU-equivalents* (÷ its full-GPU throughput).
* A new instance takes a GPU at once and traffic after ``cold_start_s``; one removed
  takes no new requests, finishes its queue and then frees its GPU.
* Device-seconds count every GPU held, from start to release or the trace's end;
  ``net_device_seconds`` subtracts the co-runner's work done on them (GPU-seconds it
  would otherwise need elsewhere).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from batchwise.gpu import horizontal, vertical
from batchwise.gpu.latency_grid import LatencyGrid
from batchwise.gpu.vertical import Budget, Priority, Tenant
from batchwise.sim.core import URGENT, Environment, Handle

DEFAULT_INTERFERENCE = 0.5
"""Slow-down of an inference batch per unit of co-runner share (0.5: a co-runner holding
40 % of the GPU makes batches 1.2× slower than their share predicts)."""
DEFAULT_COLD_START_S = 5.0
"""Seconds from adding an instance to its first request (model load, health check)."""
HP, LP = "inference", "corunner"


class Mode(StrEnum):
    DILU = "dilu"
    HORIZONTAL_ONLY = "horizontal-only"
    STATIC_REQUEST = "static-request"
    STATIC_LIMIT = "static-limit"
    EXCLUSIVE = "exclusive"


@dataclass(frozen=True)
class CoscaleSetup:
    """One inference function, its SLO and its co-runner. Invariant: shares in (0, 1]."""

    grid: LatencyGrid
    batch_size: int
    request: float
    limit: float
    slo_s: float
    corunner: LatencyGrid | None = None
    corunner_batch: int = 32
    corunner_request: float = 0.5
    corunner_limit: float = 1.0
    interference: float = DEFAULT_INTERFERENCE
    cold_start_s: float = DEFAULT_COLD_START_S
    tick_s: float = vertical.TICK_S
    max_instances: int = 64
    llm: bool = False

    def tenants(self, mode: Mode) -> tuple[Tenant, ...]:
        if mode is Mode.EXCLUSIVE:
            return (Tenant(HP, Priority.HIGH, 1.0, 1.0, self.llm),)
        hp = Tenant(HP, Priority.HIGH, self.request, self.limit, self.llm)
        if self.corunner is None:
            return (hp,)
        return hp, Tenant(LP, Priority.LOW, self.corunner_request, self.corunner_limit)

    def serving_share(self, mode: Mode) -> float:
        """The share an instance serves at when its co-runner stops (the trace's end)."""
        return {Mode.DILU: self.limit, Mode.STATIC_LIMIT: self.limit,
                Mode.EXCLUSIVE: 1.0}.get(mode, self.request)  # fmt: skip

    def per_instance(self, mode: Mode) -> float:
        """One instance's rate for sizing: at the share it holds, and for ``dilu`` at the
        request — the guarantee; the limit is headroom for bursts, not capacity to plan on."""
        share = self.request if mode is Mode.DILU else self.serving_share(mode)
        return self.grid.throughput(self.batch_size, share)


@dataclass
class _Gpu:
    index: int
    started_at: float
    ready_at: float
    shares: dict[str, float]
    budget: Budget = field(default_factory=Budget)
    queue: deque[int] = field(default_factory=deque)
    batch: list[int] | None = None
    batch_start: float = 0.0
    overflow: float | None = None  # worst batch overflow since the last tick
    remaining: float = 0.0  # fraction of the running batch's work left
    rate: float = 0.0  # fraction of the batch done per second now
    e_low: float = 0.0  # the co-runner's effective share now
    last: float = 0.0  # time progress was last integrated
    finish: Handle | None = None
    tick: Handle | None = None
    draining: bool = False
    released_at: float | None = None
    low_work: float = 0.0  # co-runner items done

    @property
    def outstanding(self) -> int:
        return len(self.queue) + (len(self.batch) if self.batch else 0)


@dataclass
class CoscaleResult:
    """What one run measured; ``to_dict`` is the ``--json`` entry of one mode."""

    mode: Mode
    duration_s: float
    requests: int
    violations: int
    latencies_s: np.ndarray
    device_seconds: float
    corunner_gpu_seconds: float
    peak_instances: int
    scale_outs: int
    scale_ins: int
    emergencies: int
    recoveries: int
    timeline: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        lat = self.latencies_s
        done = len(lat)
        return {
            "requests": self.requests,
            "qos_violation_rate": self.violations / self.requests if self.requests else 0.0,
            "p50_latency_s": float(np.percentile(lat, 50)) if done else 0.0,
            "p99_latency_s": float(np.percentile(lat, 99)) if done else 0.0,
            "inference_throughput": done / self.duration_s,
            "corunner_gpu_equivalents": self.corunner_gpu_seconds / self.duration_s,
            "device_seconds": self.device_seconds,
            "net_device_seconds": self.device_seconds - self.corunner_gpu_seconds,
            "mean_gpus": self.device_seconds / self.duration_s,
            "peak_instances": self.peak_instances,
            "scale_outs": self.scale_outs,
            "scale_ins": self.scale_ins,
            "emergencies": self.emergencies,
            "recoveries": self.recoveries,
        }


def arrivals(rates: np.ndarray, seed: int) -> np.ndarray:
    """Poisson arrival times (s, sorted): ``rates[i]`` per second during second ``i``."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.maximum(rates, 0.0))
    starts = np.repeat(np.arange(len(rates), dtype=float), counts)
    return np.sort(starts + rng.random(len(starts)))


class _Run:
    """One mode over one trace; owns the environment and every GPU."""

    def __init__(self, setup: CoscaleSetup, mode: Mode, rates: np.ndarray, seed: int) -> None:
        self.s, self.mode = setup, mode
        self.env = Environment()
        self.rates = rates
        self.duration = float(len(rates))
        self.times = arrivals(rates, seed)
        self.finish_at = np.full(len(self.times), np.nan)
        self.tenants = setup.tenants(mode)
        self.has_low = any(t.priority is Priority.LOW for t in self.tenants)
        self.dynamic = mode is Mode.DILU
        self.static = {Mode.STATIC_REQUEST: "request", Mode.STATIC_LIMIT: "limit",
                       Mode.HORIZONTAL_ONLY: "request", Mode.EXCLUSIVE: "request"}  # fmt: skip
        self.low_full = (setup.corunner.throughput(setup.corunner_batch, 1.0)
                         if setup.corunner is not None else 1.0)  # fmt: skip
        self.gpus: list[_Gpu] = []
        self.next_arrival = 0
        self.scale_outs = self.scale_ins = 0
        self.peak = 0
        self.rule: horizontal.LazyRule | None = None
        self.window = horizontal.Window()
        self.timeline: dict[str, list[float]] = {"t": [], "rps": [], "gpus": [], "corunner": []}
        self._low_seen = 0.0
        self.closed: tuple[float, float] | None = None

    # -- shares ------------------------------------------------------------------------

    def _shares_for(self, gpu: _Gpu) -> dict[str, float]:
        if not self.dynamic:
            return vertical.static_shares(self.tenants, self.static[self.mode])
        busy = {HP: gpu.batch is not None}
        return vertical.allocate(self.tenants, busy, gpu.budget)

    def _settle(self, gpu: _Gpu) -> None:
        """Integrate progress from ``gpu.last`` to now at the rates in force."""
        now = self.env.now
        dt = now - gpu.last
        if dt > 0:
            if gpu.batch is not None:
                gpu.remaining -= dt * gpu.rate
            if gpu.e_low > 0 and self.s.corunner is not None:
                gpu.low_work += dt * self.s.corunner.throughput(self.s.corunner_batch, gpu.e_low)
        gpu.last = now

    def _rerate(self, gpu: _Gpu) -> None:
        """Effective shares from the shares in force; reschedule the running batch's end."""
        if gpu.released_at is not None:
            gpu.e_low = 0.0
            return
        high = gpu.shares.get(HP, 0.0) if gpu.batch is not None else 0.0
        low = gpu.shares.get(LP, 0.0) if self.has_low else 0.0
        squeeze = 1.0 / max(1.0, high + low)
        gpu.e_low = low * squeeze
        if gpu.finish is not None:
            gpu.finish.cancel()
            gpu.finish = None
        if gpu.batch is None:
            return
        e_high = max(high * squeeze, vertical.SHARE_EPS)
        slow = 1.0 + self.s.interference * gpu.e_low
        gpu.rate = 1.0 / (self.s.grid.latency(len(gpu.batch), e_high) * slow)
        at = self.env.now + max(0.0, gpu.remaining) / gpu.rate
        gpu.finish = self.env.schedule(at, lambda g=gpu: self._finish(g))

    def _set_shares(self, gpu: _Gpu, shares: dict[str, float]) -> None:
        self._settle(gpu)
        gpu.shares = shares
        self._rerate(gpu)

    def _changed(self, gpu: _Gpu) -> None:
        """Busy state changed: make sure the controller runs at the next tick boundary."""
        if not self.dynamic or gpu.tick is not None:
            return
        tick = self.s.tick_s
        at = (math.floor(self.env.now / tick + 1e-9) + 1) * tick
        gpu.tick = self.env.schedule(at, lambda g=gpu: self._tick(g))

    def _tick(self, gpu: _Gpu) -> None:
        """One controller tick: feedback on the busy period, then the shares.

        Ticks keep running while the instance is busy (a batch may end in an emergency)
        or the budget is still recovering; otherwise they stop until the busy state
        changes. A busy tick in which no batch ended holds the budget.
        """
        gpu.tick = None
        if gpu.released_at is not None or not self.dynamic:
            return
        busy = gpu.batch is not None
        if self.has_low and (gpu.overflow is not None or not busy):
            gpu.budget = vertical.feedback(gpu.budget, gpu.overflow or 0.0, self.s.llm)
            gpu.overflow = None
        self._set_shares(gpu, self._shares_for(gpu))
        if busy or (self.has_low and not vertical.settled(gpu.budget)):
            gpu.tick = self.env.schedule(self.env.now + self.s.tick_s, lambda g=gpu: self._tick(g))

    # -- batches -----------------------------------------------------------------------

    def _try_start(self, gpu: _Gpu) -> None:
        if gpu.batch is not None or not gpu.queue or self.env.now < gpu.ready_at:
            return
        self._settle(gpu)
        take = min(self.s.batch_size, len(gpu.queue))
        gpu.batch = [gpu.queue.popleft() for _ in range(take)]
        gpu.remaining = 1.0
        gpu.batch_start = self.env.now
        if self.dynamic and gpu.shares.get(HP, 0.0) <= 0.0:
            gpu.shares = {**gpu.shares, HP: self.s.request}  # guaranteed until the tick
        self._rerate(gpu)
        self._changed(gpu)

    def _finish(self, gpu: _Gpu) -> None:
        gpu.finish = None
        self._settle(gpu)
        now = self.env.now
        batch = gpu.batch or []
        self.finish_at[batch] = now
        if self.dynamic and self.has_low:
            over = (now - gpu.batch_start) / self.s.grid.latency(len(batch), self.s.limit)
            gpu.overflow = over if gpu.overflow is None else max(gpu.overflow, over)
        gpu.batch = None
        self._try_start(gpu)
        if gpu.batch is None:
            self._rerate(gpu)
            self._changed(gpu)
            if gpu.draining and not gpu.queue:
                self._release(gpu)

    # -- instances ---------------------------------------------------------------------

    def _add(self, cold: bool) -> None:
        now = self.env.now
        gpu = _Gpu(len(self.gpus), now, now + (self.s.cold_start_s if cold else 0.0), {}, last=now)
        self.gpus.append(gpu)
        self._set_shares(gpu, self._shares_for(gpu))
        if cold:
            self.env.schedule(gpu.ready_at, lambda g=gpu: self._try_start(g))
        self.peak = max(self.peak, len(self._live()))

    def _live(self) -> list[_Gpu]:
        return [g for g in self.gpus if not g.draining and g.released_at is None]

    def _release(self, gpu: _Gpu) -> None:
        self._settle(gpu)
        gpu.released_at = self.env.now
        if gpu.tick is not None:
            gpu.tick.cancel()
            gpu.tick = None
        self._rerate(gpu)

    def _remove_one(self) -> None:
        live = self._live()
        victim = max(live, key=lambda g: (g.ready_at > self.env.now, g.index))
        victim.draining = True
        if victim.batch is None and not victim.queue:
            self._release(victim)

    # -- traffic and scaling -----------------------------------------------------------

    def _route(self) -> None:
        i = self.next_arrival
        live = self._live()
        ready = [g for g in live if g.ready_at <= self.env.now]
        gpu = (min(ready, key=lambda g: g.outstanding) if ready
               else min(live, key=lambda g: g.ready_at))  # fmt: skip
        gpu.queue.append(i)
        self._try_start(gpu)
        self.next_arrival += 1
        if self.next_arrival < len(self.times):
            self.env.schedule(float(self.times[self.next_arrival]), self._route)

    def _sample(self, second: int) -> None:
        """Once per second: the scaler's decision and one timeline point."""
        lo, hi = np.searchsorted(self.times, [second - 1, second])
        rps = float(hi - lo)
        if self.rule is not None and second > 0:
            n = len(self._live())
            want, self.window = horizontal.decide(self.rule, self.window, rps, n)
            for _ in range(want - n):
                self._add(cold=True)
            self.scale_outs += max(0, want - n)
            for _ in range(n - want):
                self._remove_one()
            self.scale_ins += max(0, n - want)
        for g in self.gpus:
            if g.released_at is None:
                self._settle(g)
        total = sum(g.low_work for g in self.gpus)
        low, self._low_seen = (total - self._low_seen) / self.low_full, total
        self.timeline["t"].append(float(second))
        self.timeline["rps"].append(rps)
        self.timeline["gpus"].append(float(sum(1 for g in self.gpus if g.released_at is None)))
        self.timeline["corunner"].append(low)
        if second + 1 < self.duration:
            self.env.schedule(float(second + 1), lambda: self._sample(second + 1), URGENT)

    def _close(self) -> None:
        """At the trace's end: device-seconds and co-runner work stop counting."""
        for g in self.gpus:
            if g.released_at is None:
                self._settle(g)
        end = self.duration
        device = sum((g.released_at if g.released_at is not None else end) - g.started_at
                     for g in self.gpus)  # fmt: skip
        self.closed = (device, sum(g.low_work for g in self.gpus) / self.low_full)
        # the co-runner stops; queued requests still finish at the serving share
        self.has_low, self.dynamic = False, False
        for g in self.gpus:
            if g.tick is not None:
                g.tick.cancel()
                g.tick = None
            if g.released_at is None:
                self._set_shares(g, {HP: self.s.serving_share(self.mode)})

    def run(self) -> CoscaleResult:
        s, mode = self.s, self.mode
        per = s.per_instance(mode)
        if mode in (Mode.STATIC_REQUEST, Mode.STATIC_LIMIT):
            n0 = min(s.max_instances, max(1, math.ceil(float(self.rates.max(initial=0)) / per)))
        else:
            self.rule = horizontal.LazyRule(per, 1, s.max_instances)
            first = float(np.mean(self.rates[: horizontal.WINDOW_S])) if len(self.rates) else 0.0
            n0 = horizontal.initial_instances(self.rule, first)
        for _ in range(n0):
            self._add(cold=False)
        if len(self.times):
            self.env.schedule(float(self.times[0]), self._route)
        self.env.schedule(0.0, lambda: self._sample(0), URGENT)
        self.env.schedule(self.duration, self._close, URGENT)
        self.env.run()
        assert self.closed is not None
        device, low = self.closed
        done = ~np.isnan(self.finish_at)
        lat = (self.finish_at - self.times)[done]
        violations = int(np.count_nonzero(lat > s.slo_s)) + int(np.count_nonzero(~done))
        return CoscaleResult(
            mode, self.duration, len(self.times), violations, lat, device, low, self.peak,
            self.scale_outs, self.scale_ins, sum(g.budget.emergencies for g in self.gpus),
            sum(g.budget.recoveries for g in self.gpus), self.timeline,
        )  # fmt: skip


def simulate(setup: CoscaleSetup, mode: Mode | str, rates: np.ndarray | list[float],
             seed: int = 0) -> CoscaleResult:  # fmt: skip
    """Serve ``rates`` (requests per second, one per second of the trace) in ``mode``."""
    return _Run(setup, Mode(mode), np.asarray(rates, dtype=float), seed).run()
