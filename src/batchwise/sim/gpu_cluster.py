"""Replay a GPU-cluster workload through a placement policy, checking every invariant.

The mechanism half of :mod:`batchwise.gpu.placement`: it owns the cluster (per-GPU
sums, who runs where), hands the policy a read-only view, validates and applies the
plan it returns, and after every event checks that

* every GPU carries Σ request ≤ 1, Σ limit ≤ 1.5 and Σ memory ≤ 40 GB;
* every placement is well formed: distinct GPUs of one node, a training gang has one
  share per member, an inference instance one share (a split LLM: several whose
  memory sums to its own), each share reserves at least the instance's request;
* every live instance is placed exactly once and a deleted one is on no GPU;
* a training gang is never moved (its state is not modelled as movable).

A violation raises :class:`InvariantViolation`: it is a bug in a policy or here, not
a statistic to report. Events run on :class:`batchwise.sim.core.Environment` at their
workload times, in file order within a second. The cluster has as many nodes as
instances are ever live at once, so a policy that opens at most one node per
instance always finds room, and the count of *active* GPUs (those holding a share)
is what each scheduler is measured by.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from batchwise.gpu.placement import (
    EPS,
    Capacity,
    ClusterView,
    Move,
    Placement,
    PlacementPolicy,
    Share,
)
from batchwise.gpu.workload import Action, Event, GpuInstance, Kind, Workload
from batchwise.sim.core import Environment

DEEP_CHECK_EVERY = 256
"""Events between full rebuilds of the state (a cross-check of the bookkeeping; the
invariants themselves are checked on every event)."""


class InvariantViolation(RuntimeError):
    """A placement or move broke a cluster invariant (a bug, never user input)."""


class GpuCluster:
    """The mutable cluster: per-GPU sums recomputed from residents, so they never drift."""

    def __init__(self, capacity: Capacity, n_nodes: int) -> None:
        n = max(1, n_nodes) * capacity.gpus_per_node
        self.capacity = capacity
        self.sm_request = np.zeros(n)
        self.sm_limit = np.zeros(n)
        self.memory_gb = np.zeros(n)
        self.count = np.zeros(n, dtype=np.int64)
        self.training = np.zeros(n, dtype=np.int64)  # training shares per GPU
        self.residents: list[dict[str, Share]] = [{} for _ in range(n)]
        self.placements: dict[str, Placement] = {}
        self.instances: dict[str, GpuInstance] = {}
        self.functions: dict[str, set[str]] = {}
        self.moves: dict[str, int] = {}  # live instance -> times moved
        self.view = ClusterView(capacity, self.sm_request, self.sm_limit, self.memory_gb,
                                self.count, self.training, self.residents, self.placements,
                                self.instances, self.functions, self.moves)  # fmt: skip

    @property
    def n_gpus(self) -> int:
        return len(self.count)

    def add(self, inst: GpuInstance, placement: Placement | None) -> None:
        if inst.name in self.instances:
            raise InvariantViolation(f"{inst.name} started twice")
        if placement is None:
            raise InvariantViolation(f"no GPU of {self.n_gpus} could take {inst.name}")
        self._validate(inst, placement)
        self.instances[inst.name] = inst
        self.functions.setdefault(inst.function, set()).add(inst.name)
        self._occupy(placement)

    def remove(self, name: str) -> GpuInstance:
        inst = self.instances.pop(name, None)
        if inst is None:
            raise InvariantViolation(f"delete of {name}, which is not running")
        self.functions[inst.function].discard(name)
        if not self.functions[inst.function]:
            del self.functions[inst.function]
        self.moves.pop(name, None)
        placement = self.placements.pop(name)
        self._release(placement)
        stale = [g for g in placement.gpus if name in self.residents[g]]
        if stale:
            raise InvariantViolation(f"deleted {name} still on GPU {stale}")
        return inst

    def move(self, move: Move) -> float:
        """Apply one move; returns the memory (GB) it restarts elsewhere."""
        inst = self.instances.get(move.instance)
        if inst is None:
            raise InvariantViolation(f"move of {move.instance}, which is not running")
        if inst.kind is Kind.TRAINING:
            raise InvariantViolation(f"move of training gang {inst.name}")
        self._release(self.placements.pop(inst.name))
        self._validate(inst, move.to)
        self._occupy(move.to)
        self.moves[inst.name] = self.moves.get(inst.name, 0) + 1
        return inst.total_memory_gb

    def _occupy(self, placement: Placement) -> None:
        self.placements[placement.instance] = placement
        for s in placement.shares:
            self.residents[s.gpu][placement.instance] = s
        self._resum(placement.gpus)

    def _release(self, placement: Placement) -> None:
        for g in placement.gpus:
            del self.residents[g][placement.instance]
        self._resum(placement.gpus)

    def _resum(self, gpus: Iterable[int]) -> None:
        """Recompute the touched GPUs' sums (fsum: exact, independent of order) and check them."""
        c = self.capacity
        for g in gpus:
            shares = self.residents[g].values()
            self.sm_request[g] = req = math.fsum(s.sm_request for s in shares)
            self.sm_limit[g] = lim = math.fsum(s.sm_limit for s in shares)
            self.memory_gb[g] = mem = math.fsum(s.memory_gb for s in shares)
            self.count[g] = len(shares)
            self.training[g] = sum(
                1 for n in self.residents[g] if self.instances[n].kind is Kind.TRAINING
            )
            if req > c.sm + EPS or lim > c.limit + EPS or mem > c.memory_gb + EPS:
                raise InvariantViolation(
                    f"GPU {g} over capacity: request {req:.4f}/{c.sm:g}, "
                    f"limit {lim:.4f}/{c.limit:g}, memory {mem:.4f}/{c.memory_gb:g} GB "
                    f"({', '.join(sorted(self.residents[g]))})"
                )

    def _validate(self, inst: GpuInstance, p: Placement) -> None:
        """The structural invariants of one placement (capacity is checked on apply)."""
        bad = _placement_error(inst, p, self.capacity, self.n_gpus)
        if bad:
            raise InvariantViolation(f"{inst.name}: {bad} in {p}")

    def check_all(self) -> None:
        """Every GPU within capacity (vectorised: cheap enough for every event)."""
        c = self.capacity
        over = (
            (self.sm_request > c.sm + EPS)
            | (self.sm_limit > c.limit + EPS)
            | (self.memory_gb > c.memory_gb + EPS)
        )
        if over.any():
            raise InvariantViolation(f"GPUs over capacity: {np.flatnonzero(over)[:10].tolist()}")
        if len(self.placements) != len(self.instances):
            raise InvariantViolation("placements and live instances differ")

    def check_deep(self) -> None:
        """Rebuild everything from the placements and compare (O(shares): tests, peaks, end)."""
        self.check_all()
        if set(self.placements) != set(self.instances):
            raise InvariantViolation("a live instance is unplaced, or a placed one not live")
        seen: list[dict[str, Share]] = [{} for _ in range(self.n_gpus)]
        for name, p in self.placements.items():
            self._validate(self.instances[name], p)
            for s in p.shares:
                seen[s.gpu][name] = s
        if seen != self.residents:
            raise InvariantViolation("GPU residents differ from the placements")
        for g in range(self.n_gpus):
            shares = seen[g].values()
            sums = (math.fsum(s.sm_request for s in shares), math.fsum(s.sm_limit for s in shares),
                    math.fsum(s.memory_gb for s in shares), len(shares))  # fmt: skip
            kept = (self.sm_request[g], self.sm_limit[g], self.memory_gb[g], self.count[g])
            if sums != kept:
                raise InvariantViolation(f"GPU {g}: sums {kept} drifted from {sums}")


def _placement_error(inst: GpuInstance, p: Placement, c: Capacity, n_gpus: int) -> str:
    """Why ``p`` is not a valid placement of ``inst`` ('' when it is)."""
    gpus = p.gpus
    if p.instance != inst.name:
        return f"placement names {p.instance}"
    if not gpus or len(set(gpus)) != len(gpus) or not all(0 <= g < n_gpus for g in gpus):
        return "no GPUs, a GPU twice, or one outside the cluster"
    if len({g // c.gpus_per_node for g in gpus}) != 1:
        return "GPUs on more than one node"
    for s in p.shares:
        ok = (s.sm_request >= inst.sm_request - EPS and s.sm_limit >= s.sm_request - EPS
              and s.memory_gb > EPS)  # fmt: skip
        if not ok:
            return f"share {s} reserves less than the request, or no memory"
    mems = sorted(s.memory_gb for s in p.shares)
    if inst.kind is Kind.TRAINING:
        want = sorted(inst.memory_gb)
        same = len(gpus) == inst.gpu_num and all(
            math.isclose(a, b, abs_tol=1e-6) for a, b in zip(mems, want, strict=True)
        )
        if not same:
            return f"gang of {len(gpus)} GPUs for gpu_num={inst.gpu_num}, or wrong memory"
    elif len(gpus) > 1 and inst.kind is not Kind.LLM_INFERENCE:
        return "only an LLM's memory may be split"
    elif not math.isclose(sum(mems), inst.memory_gb[0], abs_tol=1e-6):
        return f"memory {sum(mems):g} GB placed for {inst.memory_gb[0]:g} GB"
    return ""


@dataclass
class ClusterSimResult:
    """What one scheduler did on one workload."""

    scheduler: str
    n_gpus: int  # GPUs in the simulated cluster (a bound, not a cost)
    times_s: list[float] = field(default_factory=list)  # one per event
    active_gpus: list[int] = field(default_factory=list)  # after each event
    peak_gpus: int = 0  # max(active_gpus)
    peak_time_s: float = 0.0  # the first event that reaches the peak
    peak_line: int = 0  # its line in the workload file
    sm_fragmentation: float = 0.0  # mean(1 - Σreq) over active GPUs at that event
    memory_fragmentation: float = 0.0  # mean(1 - Σmem/40) over the same GPUs
    limit_fragmentation: float = 0.0  # mean(1 - Σlim/1.5) over the same GPUs
    moves: int = 0  # instances restarted elsewhere, over the whole replay
    moved_memory_gb: float = 0.0  # memory those restarts reload
    gpu_seconds: float = 0.0  # ∫ active GPUs dt, from the first event to the last
    invariant_violations: int = 0  # always 0: a violation raises instead

    def to_dict(self, exclusive_peak: int | None = None) -> dict[str, Any]:
        """The ``--json`` object of one scheduler (the timeline is left to the plot)."""
        ratio = self.peak_gpus / exclusive_peak if exclusive_peak else None
        return {
            "peak_gpus": self.peak_gpus,
            "ratio_to_exclusive": None if ratio is None else round(ratio, 4),
            "peak_time_s": self.peak_time_s,
            "peak_line": self.peak_line,
            "sm_fragmentation": round(self.sm_fragmentation, 4),
            "memory_fragmentation": round(self.memory_fragmentation, 4),
            "limit_fragmentation": round(self.limit_fragmentation, 4),
            "moves": self.moves,
            "moved_memory_gb": round(self.moved_memory_gb, 3),
            "gpu_hours": round(self.gpu_seconds / 3600.0, 4),
            "final_active_gpus": self.active_gpus[-1] if self.active_gpus else 0,
            "invariant_violations": self.invariant_violations,
        }


def exclusive_peak(workload: Workload) -> int:
    """Peak of Σ gpu_num over live instances: what Exclusive uses, without simulating."""
    live = peak = 0
    for e in workload.events:
        live += e.instance.gpu_num if e.action is Action.START else -e.instance.gpu_num
        peak = max(peak, live)
    return peak


def simulate(
    workload: Workload, policy: PlacementPolicy, capacity: Capacity | None = None,
    *, deep_checks: bool = False,
) -> ClusterSimResult:  # fmt: skip
    """Replay ``workload`` through ``policy``; raises InvariantViolation on any violation.

    ``deep_checks`` rebuilds the whole state after every event (O(shares) each: for
    tests); otherwise every event gets the vectorised capacity check and the checks
    of what it touched, and the state is rebuilt every DEEP_CHECK_EVERY events and at
    the end.
    """
    cluster = GpuCluster(capacity or Capacity(), n_nodes=workload.max_live)
    result = ClusterSimResult(scheduler=policy.name, n_gpus=cluster.n_gpus)
    env = Environment(workload.events[0].time_s if workload.events else 0.0)
    for ev in workload.events:
        env.schedule(ev.time_s, partial(_handle, env, cluster, policy, ev, result, deep_checks))
    env.run()
    cluster.check_deep()
    return result


def _handle(
    env: Environment, cluster: GpuCluster, policy: PlacementPolicy, ev: Event,
    result: ClusterSimResult, deep: bool,
) -> None:  # fmt: skip
    """One event: apply the policy's plan, check, record."""
    if ev.action is Action.START:
        cluster.add(ev.instance, policy.place(cluster.view, ev.instance))
        moves = policy.after_place(cluster.view, ev.instance)
    else:
        cluster.remove(ev.instance.name)
        moves = policy.on_delete(cluster.view, ev.instance)
    for move in moves:
        result.moved_memory_gb += cluster.move(move)
        result.moves += 1
    cluster.check_all()
    if deep:
        cluster.check_deep()
    _record(env.now, cluster, ev, result)


def _record(now: float, cluster: GpuCluster, ev: Event, result: ClusterSimResult) -> None:
    if result.times_s:
        result.gpu_seconds += result.active_gpus[-1] * (now - result.times_s[-1])
    active = cluster.count > 0
    n = int(active.sum())
    result.times_s.append(now)
    result.active_gpus.append(n)
    if len(result.times_s) % DEEP_CHECK_EVERY == 0:
        cluster.check_deep()
    if n > result.peak_gpus:
        c = cluster.capacity
        result.peak_gpus, result.peak_time_s, result.peak_line = n, now, ev.line
        result.sm_fragmentation = float(np.mean(1.0 - cluster.sm_request[active] / c.sm))
        result.memory_fragmentation = float(np.mean(1.0 - cluster.memory_gb[active] / c.memory_gb))
        result.limit_fragmentation = float(np.mean(1.0 - cluster.sm_limit[active] / c.limit))
