"""Dilu's fast vertical scaler: each tenant's compute share between its request and limit.

Why two numbers per function: a *request* is what placement guarantees (Σ requests
≤ 1 on a device), a *limit* is what the function may burst to (Σ limits ≤ 1.5). A
latency-bound inference instance (high priority) that is the only busy one on its
device runs at its limit; when several are busy each keeps its request and the
spare share is split in proportion to requests. Low-priority co-runners (training,
batch jobs) share what is left in proportion to their requests, each at most its
limit and at most its *budget*. Everything here is pure — tenants, who is busy and
the budget state in, shares out — so the GPU simulation
(:mod:`batchwise.sim.gpu_serving`) and a live enforcer run the same decisions on
their own clocks.

The budget is a feedback loop on the high-priority side's *busy periods* — the time a
batch's kernels keep the device busy — against the least such period, the batch run
alone at the limit: ``overflow = batch time / solo time``. Co-located work stretches
it two ways: shares handed out beyond the device squeeze everyone, and memory
bandwidth and caches are not partitioned by SM share at all. At or above
:data:`EMERGENCY_OVERFLOW` (:data:`EMERGENCY_OVERFLOW_LLM` for LLMs, whose token
latency is tighter) the low-priority budget is divided by the overflow, never below
:data:`BUDGET_FLOOR` of the co-runners' requests; a tick whose batches ran below
:data:`RECOVERY_OVERFLOW` (an idle tick counts as calm) is calm, and every
:data:`RECOVERY_EVERY`-th calm tick in a row multiplies the budget by
:data:`RECOVERY_GAIN`, up to the limits. In between it holds. Why batches and not
queueing: a work-conserving batcher keeps an instance busy back to back at any
moderate load, so the time busy says nothing about interference; queueing is the
horizontal scaler's signal. These are the
reference implementation's constants (``../shared/papers/dilu.md`` §3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

TICK_S = 0.005
"""How often the controller re-divides each device (s): Dilu's token period."""
EMERGENCY_OVERFLOW = 1.6
"""A busy period this many times the minimum cuts the low-priority budget."""
EMERGENCY_OVERFLOW_LLM = 1.3
"""The same for LLM inference."""
RECOVERY_OVERFLOW = 1.2
"""A tick whose busy period is shorter than this (× the minimum) is calm; calm ticks let
the budget recover."""
RECOVERY_EVERY = 5
"""Calm ticks in a row per recovery step (25 ms at the 5 ms tick)."""
RECOVERY_GAIN = 1.3
"""Budget multiplier per recovery step (capped at the co-runners' limits)."""
BUDGET_FLOOR = 0.01
"""Least budget, as a fraction of each co-runner's request: a co-runner is never starved to
zero (a training job that makes no progress holds its memory for nothing)."""
SHARE_EPS = 1e-9


class Priority(StrEnum):
    HIGH = "high"  # latency-bound inference
    LOW = "low"  # training, batch jobs


@dataclass(frozen=True)
class Tenant:
    """One function instance on a device. Invariant: ``0 < request <= limit`` (finite).

    Shares are in the device's unit: a fraction of a GPU (capacity 1), or vCPUs of a
    machine (capacity its cores) when the live enforcer runs the same policy on CPUs.
    """

    name: str
    priority: Priority
    request: float
    limit: float
    llm: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.request <= self.limit < math.inf):
            raise ValueError(f"{self.name}: need 0 < request <= limit, got "
                             f"{self.request}, {self.limit}")  # fmt: skip


@dataclass(frozen=True)
class Budget:
    """The low-priority budget of one device: a fraction of the co-runners' limits."""

    scale: float = 1.0  # (0, 1]: each co-runner may use scale × its limit
    calm: int = 0  # calm ticks since the last recovery step or emergency
    emergencies: int = 0
    recoveries: int = 0


def emergency_threshold(llm: bool) -> float:
    return EMERGENCY_OVERFLOW_LLM if llm else EMERGENCY_OVERFLOW


def feedback(budget: Budget, overflow: float, llm: bool = False) -> Budget:
    """The budget after one controller tick whose worst batch ran ``overflow`` × solo
    (0 for an idle tick)."""
    if overflow >= emergency_threshold(llm):
        return replace(budget, scale=max(BUDGET_FLOOR, budget.scale / overflow), calm=0,
                       emergencies=budget.emergencies + 1)  # fmt: skip
    if overflow >= RECOVERY_OVERFLOW:
        return replace(budget, calm=0)
    calm = budget.calm + 1
    if calm < RECOVERY_EVERY:
        return replace(budget, calm=calm)
    if budget.scale >= 1.0:
        return replace(budget, calm=0)
    return replace(budget, scale=min(1.0, budget.scale * RECOVERY_GAIN), calm=0,
                   recoveries=budget.recoveries + 1)  # fmt: skip


def settled(budget: Budget) -> bool:
    """Nothing left to recover: ticks while idle would change nothing."""
    return budget.scale >= 1.0


def high_shares(tenants: Iterable[Tenant], busy: Mapping[str, bool],
                capacity: float = 1.0) -> dict[str, float]:  # fmt: skip
    """Busy high-priority tenants: the limit when alone, else request + spare ∝ request."""
    active = [t for t in tenants if t.priority is Priority.HIGH and busy.get(t.name, False)]
    if len(active) == 1:
        return {active[0].name: min(active[0].limit, capacity)}
    total = sum(t.request for t in active)
    spare = max(0.0, capacity - total)
    return {t.name: min(t.limit, t.request + spare * t.request / total) for t in active}


def low_shares(tenants: Iterable[Tenant], left: float, budget: Budget) -> dict[str, float]:
    """Low-priority tenants share ``left`` ∝ request, each within its limit and budget."""
    low = [t for t in tenants if t.priority is Priority.LOW]
    total = sum(t.request for t in low)
    shares = {}
    for t in low:
        fair = max(0.0, left) * t.request / total
        cap = max(BUDGET_FLOOR * t.request, budget.scale * t.limit)
        shares[t.name] = max(BUDGET_FLOOR * t.request, min(fair, cap, t.limit))
    return shares


def allocate(tenants: Iterable[Tenant], busy: Mapping[str, bool], budget: Budget,
             capacity: float = 1.0) -> dict[str, float]:  # fmt: skip
    """Every tenant's share for the next tick (idle high-priority tenants get 0)."""
    tenants = list(tenants)
    high = high_shares(tenants, busy, capacity)
    shares = {t.name: 0.0 for t in tenants if t.priority is Priority.HIGH}
    shares.update(high)
    shares.update(low_shares(tenants, capacity - sum(high.values()), budget))
    return shares


def static_shares(tenants: Iterable[Tenant], reserve: str,
                  capacity: float = 1.0) -> dict[str, float]:  # fmt: skip
    """The baselines' fixed split: high priority always holds its ``request`` or ``limit``
    (``reserve``), busy or not; low priority gets the rest ∝ request, within its limit."""
    tenants = list(tenants)
    shares = {t.name: getattr(t, reserve) for t in tenants if t.priority is Priority.HIGH}
    left = capacity - sum(shares.values())
    shares.update(low_shares(tenants, left, Budget()))
    return shares
