"""Finite instance pools for the serving simulation (a fixed machine, not serverless).

Why: the serverless model starts every batch at once on its own instance, which no
fixed machine does. With a pool, a group has ``warm`` instances; a batch is formed when
one is idle (as live, requests wait in the batcher while all are busy:
:class:`~batchwise.serving.batcher.GroupBatcher`), and while all are
busy the pool may start another one, up to ``max``, which serves only after
``cold_start_s``. This lets a simulation predict a live run on a fixed machine,
queueing delay included — and, as live, every request spends ``overhead_s`` outside
batching (HTTP, IPC) and groups batch with the gateway's timeouts
(:func:`batchwise.serving.deadlines.live_timeouts`).

A CPU instance of fractional vCPU runs under a CFS quota, as ``batchwise serve``'s
instances do (:mod:`batchwise.perf.cfs`): a batch after an idle spell runs at full
speed until the period's quota is spent, batches back to back average the quota's
rate. ``cpu_period_s=None`` charges every batch the profile's time at its vCPU
instead (the profiler's back-to-back figure, always throttled). A batch that follows an
idle spell also runs slower by the profile's ``idle_slowdown``
(:mod:`batchwise.perf.idle`; ``idle_slowdown=False``: as back to back).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from batchwise.errors import ConfigError
from batchwise.perf.cfs import DEFAULT_PERIOD_S, CfsBandwidth, instance_threads
from batchwise.serving.deadlines import DEFAULT_OVERHEAD_S


@dataclass(frozen=True)
class PoolSpec:
    """Instances per group. Invariant: ``1 <= warm <= max``; delays >= 0."""

    warm: int  # instances ready at t = 0
    max: int  # instances the pool may grow to while all are busy
    cold_start_s: float = 0.0  # delay before a new instance serves (s)
    overhead_s: float = DEFAULT_OVERHEAD_S  # per request, outside batching, as live (s)
    cpu_period_s: float | None = DEFAULT_PERIOD_S  # CFS period of CPU instances; None: off
    admission: bool = True  # deadline-aware admission, as ``batchwise serve`` runs it
    autoscale: bool = False  # the live controller sizes each group (max: unused)
    cores: float | None = None  # what the controller fits instances in (None: this machine's)
    plan_start: bool = False  # autoscaled: start as live, sized for the planned load (not warm)
    batch_order: str = "arrival"  # arrival | deadline, as serve --batch-order
    overload_share: str = "first-come"  # first-come | even, as serve --overload-share
    standby: int = 1  # autoscaled: warm standbys per group, as serve --standby
    idle_slowdown: bool = True  # a batch after an idle spell takes the profile's factor

    def __post_init__(self) -> None:
        if not 1 <= self.warm <= self.max:
            raise ConfigError(f"instances: need 1 <= warm ({self.warm}) <= max ({self.max})")
        if not 0 <= self.cold_start_s <= 3600:
            raise ConfigError(f"cold start must be in [0, 3600] s, got {self.cold_start_s}")
        if not 0 <= self.overhead_s <= 60:
            raise ConfigError(f"overhead must be in [0, 60] s, got {self.overhead_s}")
        if self.cpu_period_s is not None and not 0.001 <= self.cpu_period_s <= 1.0:
            ms = self.cpu_period_s * 1e3
            raise ConfigError(f"CPU period must be in [1, 1000] ms, got {ms:g}")


class InstancePool:
    """When each instance is next free; assigns each batch a start time (mechanism).

    With ``vcpu`` (a CPU function) and the spec's CFS period, each instance carries its
    quota (:class:`CfsBandwidth`, period boundaries staggered across instances, as each
    cgroup's timer runs on its own) and a batch's work is its full-speed duration; the
    quotas can be resized (a vertical surge) and instances started or drained
    (``scale_to``) by the live controller (:mod:`batchwise.sim.autoscale`)."""

    def __init__(self, spec: PoolSpec, vcpu: float | None = None, warm: int | None = None
                 ) -> None:  # fmt: skip
        self.spec = spec
        self.free_at: list[float] = []  # time each instance finishes its current work
        self.ready_at: list[float] = []  # when each instance serves its first batch
        self.quotas: list[CfsBandwidth | None] = []
        self.draining: list[bool] = []  # takes no more batches (drained by the controller)
        self._phases: list[float] = []
        self._runs: list[deque[tuple[float, float, int]]] = []  # per instance: (start, end,
        # items) of the batches placed on it that have not ended, by start
        self.threads = instance_threads(vcpu) if vcpu is not None else 1
        self.quota_model = vcpu is not None and spec.cpu_period_s is not None
        self.vcpu = vcpu
        self.peak = 0  # most live instances at once
        n = spec.warm if warm is None else warm
        for i in range(n):
            self._add(0.0, i / n * (spec.cpu_period_s or 0.0))
        self.queued_s = 0.0  # total time batches waited for an instance
        self.idle_extra_s = 0.0  # total work added by idle slowdowns (s)
        self.last_work_s = 0.0  # the last batch's work, its idle slowdown included (s)
        self.standby: list[float] = []  # warm standbys' ready times, earliest first
        self.standby_target = 0

    @property
    def throttled(self) -> bool:
        """Whether batches run under a CFS quota (work is then at full speed)."""
        return self.quota_model and self.vcpu is not None and self.vcpu < self.threads

    def _quota(self, phase_s: float) -> CfsBandwidth | None:
        period = self.spec.cpu_period_s
        if not self.quota_model or self.vcpu is None or period is None:
            return None
        return CfsBandwidth(self.vcpu, self.threads, period, phase_s)

    def _add(self, ready_at: float, phase_s: float) -> None:
        self.free_at.append(ready_at)
        self.ready_at.append(ready_at)
        self._runs.append(deque())
        self._phases.append(phase_s)
        self.draining.append(False)
        self.quotas.append(self._quota(phase_s))
        self.peak = max(self.peak, self.live_count())

    @property
    def size(self) -> int:
        """Instances that served at once, at most (started ones, without autoscaling)."""
        return self.peak

    def _usable(self) -> list[int]:
        return [i for i, gone in enumerate(self.draining) if not gone]

    def live_count(self) -> int:
        return self.draining.count(False)

    def ready_count(self, now: float) -> int:
        return sum(1 for i in self._usable() if self.ready_at[i] <= now)

    def idle(self, now: float) -> bool:
        """Whether an instance can start a batch at ``now``."""
        return any(self.free_at[i] <= now for i in self._usable())

    def grow(self, now: float) -> float | None:
        """All busy and work is due: start an instance if one may be added and would be
        ready before the first busy one frees; returns when it is ready (None: not)."""
        cold = now + self.spec.cold_start_s
        usable = self._usable()
        if self.spec.autoscale or len(self.free_at) >= self.spec.max:
            return None  # autoscaled: the controller decides, as live
        if usable and cold >= min(self.free_at[i] for i in usable):
            return None
        self._add(cold, cold)  # its period timer starts with it
        return cold

    def scale_to(self, now: float, n: int, standby: int | None = None) -> list[float]:
        """Until ``n`` serve and ``standby`` more are kept warm (None: as before), as the
        live pool's ``scale_to``: a standby is promoted (serving once it is warm), else a
        new one serves after the cold start; idle or newest ones leave first (a busy one
        after its batch), to standby while it is short; returns the serving ones' ready
        times."""
        if standby is not None:
            self.standby_target = max(0, standby)
        live = self._usable()
        starts = []
        for _ in range(n - len(live)):
            ready = max(now, self.standby.pop(0)) if self.standby else now + self.spec.cold_start_s
            self._add(ready, ready)
            starts.append(ready)
        if len(live) > n:
            victims = sorted(live, key=lambda i: (self.free_at[i] > now, -self.ready_at[i]))
            for i in victims[: len(live) - n]:
                self.draining[i] = True
                if self.free_at[i] <= now and len(self.standby) < self.standby_target:
                    self.standby.append(now)
        del self.standby[self.standby_target :]
        self.standby += [now + self.spec.cold_start_s] * (self.standby_target - len(self.standby))
        self.standby.sort()
        return starts

    def resize(self, vcpu: float) -> None:
        """Every instance's quota becomes ``vcpu`` (up to its threads: full speed)."""
        self.vcpu = vcpu
        self.quotas = [self._quota(ph) for ph in self._phases]

    def run(self, now: float, work_s: float, items: int = 1,
            slowdown: Callable[[float], float] | None = None) -> tuple[float, float]:  # fmt: skip
        """Place a batch of ``items`` dispatched at ``now`` needing ``work_s`` on the
        instance that frees first; return its (start, end). ``slowdown``: the factor on
        the work after the instance sat idle this long (s) before the batch."""
        i = min(self._usable(), key=self.free_at.__getitem__)
        start = max(now, self.free_at[i])
        self.queued_s += start - now
        if slowdown is not None:
            slower = work_s * slowdown(start - self.free_at[i])
            self.idle_extra_s += slower - work_s
            work_s = slower
        self.last_work_s = work_s
        quota = self.quotas[i]
        end = start + work_s if quota is None else quota.run(start, work_s)
        self.free_at[i] = end
        runs = self._runs[i]
        while runs and runs[0][1] <= now:
            runs.popleft()
        runs.append((start, end, items))
        return start, end

    def snapshot(self, now: float, avg: Callable[[int], float]) -> tuple[list[int], list[float]]:
        """What the gateway's admission sees at ``now``: the sizes of batches waiting for an
        instance (FIFO; none when batches are formed late) and each instance's *predicted*
        free time (a running batch's start plus ``avg`` of its size; a starting instance's
        ready time) — not the drawn ends, which no live gateway knows."""
        queued: list[tuple[float, int]] = []
        free: list[float] = []
        for i in self._usable():
            runs = self._runs[i]
            while runs and runs[0][1] <= now:
                runs.popleft()
            f = max(now, self.ready_at[i])
            for start, _end, items in runs:
                if start <= now:
                    f = start + avg(items)
                else:
                    queued.append((start, items))
            free.append(f)
        queued.sort()
        return [b for _, b in queued], free
