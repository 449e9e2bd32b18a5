"""CPU bandwidth control (CFS quota) as the kernel applies it to one instance's cgroup.

Why: a fractional vCPU is a quota — ``vcpu × period`` of CPU time per period (100 ms
by default), refilled at every period boundary with nothing carried over — not a
slower CPU. An instance that was idle starts its next batch with the whole quota of
the period and runs at full speed until it is spent: a 40 ms batch on a 0.8-vCPU
instance (80 ms per 100 ms) is never throttled when batches come a few periods
apart, while batches back to back average the quota's rate. The profiler times
batches back to back, so its latency at 0.8 vCPU is the throttled one; live at low
and moderate load batches ran 21–28 % faster than it (``service_factor`` 0.72–0.79),
and the simulator, charging every batch the throttled time, over-predicted cost by
as much. :class:`CfsBandwidth` is that rule, pure (times in, times out), for the
simulator's finite-instance pools; work is given as the batch's duration at full
speed (the profile at the instance's ``threads`` vCPU, where the quota never binds).

Not modelled: ``cpu.cfs_burst_us`` (off by default) and contention from other
processes on the same cores (a throttled period is the only slowdown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_PERIOD_S = 0.1
"""The kernel's default CFS period (``cpu.cfs_period_us`` = 100 000)."""
EPS = 1e-12


def instance_threads(vcpu: float) -> int:
    """Runtime threads an instance of ``vcpu`` runs by default: its vCPU rounded, at least one.

    One rule for serving, the profiler and the simulator: more threads than the quota
    covers stall on each other; fewer leave quota unused."""
    return max(1, round(vcpu))


def instance_room(vcpu: float, threads: int) -> float:
    """Cores an instance of ``vcpu`` with ``threads`` runtime threads takes from a machine:
    its quota, but no more than its threads (a thread runs on one core at a time).

    Why: a plan may size an instance past its threads (1.1 vCPU rounds to one thread);
    counted at 1.1, a 2-core machine held one such instance and its second core idled
    while requests were refused; each really holds one core, so two fit."""
    return min(vcpu, float(max(1, threads)))


@dataclass
class CfsBandwidth:
    """One cgroup's quota. Invariants: ``vcpu > 0``; ``threads >= 1``; ``period_s > 0``.

    ``phase_s`` places the period boundaries (``phase_s + k × period_s``): each cgroup's
    period timer runs on its own. While running, the instance uses ``threads`` CPUs, so
    the quota lasts ``vcpu × period_s / threads`` of wall time per period.
    """

    vcpu: float
    threads: int = 1
    period_s: float = DEFAULT_PERIOD_S
    phase_s: float = 0.0
    _period: int | None = None  # index of the period ``_used`` belongs to
    _used: float = 0.0  # CPU time used in that period (s)

    def __post_init__(self) -> None:
        if not (self.vcpu > 0 and self.threads >= 1 and self.period_s > 0):
            raise ValueError(f"bad CFS bandwidth: vcpu={self.vcpu} threads={self.threads} "
                             f"period={self.period_s}")  # fmt: skip

    @property
    def unlimited(self) -> bool:
        """A quota of at least the threads' use never throttles."""
        return self.vcpu >= self.threads - EPS

    def run(self, start: float, work_s: float) -> float:
        """Run ``work_s`` seconds of full-speed work from ``start``; return when it ends.

        The instance must be idle from the end of its previous run until ``start``
        (runs are given in time order, as one instance serves batches one at a time)."""
        if work_s <= 0:
            return start
        if self.unlimited:
            return start + work_s
        p = self.period_s
        wall_per_period = self.vcpu * p / self.threads  # full-speed time the quota buys
        t, left = start, work_s
        k = math.floor((t - self.phase_s) / p + EPS)
        if k != self._period:
            self._period, self._used = k, 0.0
        # First (partial) period: the quota's remainder, up to the period's end.
        end = self.phase_s + (k + 1) * p
        d = min(left, max(0.0, wall_per_period - self._used / self.threads), end - t)
        t, left = t + d, left - d
        self._used += d * self.threads
        if left <= EPS:
            return t
        # Whole periods, each giving ``wall_per_period`` of progress from its boundary.
        full = math.ceil(left / wall_per_period - EPS) - 1
        k += 1 + full
        left -= full * wall_per_period
        self._period = k
        self._used = left * self.threads
        return self.phase_s + k * p + left
