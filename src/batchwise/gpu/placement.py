"""Pure GPU placement policies: Exclusive, INFless-l, INFless-r, Dilu (and ours, in ``repack``).

A policy sees a read-only :class:`ClusterView` (per-GPU Σ reserved SM request, Σ SM
limit, Σ memory, and who runs where) and returns a plain :class:`Placement` for a new
instance, and — after a start or a delete — a tuple of :class:`Move` s (the
baselines never move anything). It never mutates the view; the mechanism
(:mod:`batchwise.sim.gpu_cluster`) applies the plan and checks every invariant, so
one policy can drive the simulator and a real cluster alike.

The model (``../shared/papers/dilu.md`` §2): a GPU carries Σ request ≤ 1.0 (requests
are guarantees), Σ limit ≤ 1.5 (limits are oversubscribed) and Σ memory ≤ 40 GB; nodes
hold 4 GPUs and a training gang runs on one node. Ties between equally good GPUs go
to the lowest GPU index, so every policy is deterministic.

What each baseline reserves per GPU, as in the authors' simulator: Exclusive gives each
instance GPUs of its own; INFless-l reserves the limit as the request (no bursting
into a neighbour's share), INFless-r reserves only the request (limit = request);
Dilu reserves (request, limit) and scores best fit over SM and memory. Deviations
from the authors' code, each because the code would break an invariant or count a
GPU that holds nothing of the instance, are listed in :class:`DiluPolicy`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar

import numpy as np

from batchwise.errors import ConfigError
from batchwise.gpu.workload import (
    DEFAULT_GPU_MEMORY_GB,
    DEFAULT_GPUS_PER_NODE,
    DEFAULT_LIMIT_CAPACITY,
    SM_CAPACITY,
    GpuInstance,
    Kind,
)

EPS = 1e-9
"""Slack of every capacity comparison: 0.55 + 0.45 must fit in 1.0 despite rounding."""
SM_WEIGHT = 0.6
"""Weight of SM fragmentation in Dilu's best-fit score (the authors' ``alpha``)."""
MEMORY_WEIGHT = 0.4
"""Weight of memory fragmentation in Dilu's best-fit score (the authors' ``beta``)."""

Score = Callable[["ClusterView", float, float], np.ndarray]
"""``score(view, request, memory_gb) -> per-GPU score``; lower is a better fit."""


@dataclass(frozen=True, slots=True)
class Capacity:
    """What one GPU and one node hold."""

    sm: float = SM_CAPACITY  # Σ reserved SM requests per GPU
    limit: float = DEFAULT_LIMIT_CAPACITY  # Σ SM limits per GPU (oversubscription)
    memory_gb: float = DEFAULT_GPU_MEMORY_GB  # Σ memory per GPU
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE  # a gang never spans nodes


@dataclass(frozen=True, slots=True)
class Share:
    """What one instance reserves on one GPU."""

    gpu: int  # 0 <= gpu < view.n_gpus
    sm_request: float  # > 0; >= the instance's request (a policy may reserve more)
    sm_limit: float  # >= sm_request
    memory_gb: float  # > 0: a GPU that holds none of the instance is not part of it


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an instance runs: one share per GPU it uses."""

    instance: str  # a live instance's name
    shares: tuple[Share, ...]  # distinct GPUs of one node; training: one per gang member;
    # otherwise one share, or (a split LLM) several whose memory sums to the instance's

    @staticmethod
    def make_empty(instance: str) -> Placement:
        return Placement(instance=instance, shares=())

    @property
    def gpus(self) -> tuple[int, ...]:
        return tuple(s.gpu for s in self.shares)


@dataclass(frozen=True, slots=True)
class Move:
    """Restart a live instance elsewhere (a cold start; its old shares are released first)."""

    instance: str  # live, never a training gang (its state is not modelled as movable)
    to: Placement  # replaces the current placement; to.instance == instance


class ClusterView:
    """Read-only view of the cluster the mechanism owns; valid only during one policy call.

    The arrays are non-writable views of the mechanism's own, so building a view costs
    nothing per event; a policy that wants to try something copies them.
    """

    __slots__ = ("_functions", "_instances", "_moves", "_placements", "_residents", "capacity",
                 "count", "memory_gb", "sm_limit", "sm_request", "training")  # fmt: skip

    def __init__(
        self,
        capacity: Capacity,
        sm_request: np.ndarray,
        sm_limit: np.ndarray,
        memory_gb: np.ndarray,
        count: np.ndarray,
        training: np.ndarray,
        residents: Sequence[Mapping[str, Share]],
        placements: Mapping[str, Placement],
        instances: Mapping[str, GpuInstance],
        functions: Mapping[str, set[str]],
        moves: Mapping[str, int],
    ) -> None:
        self.capacity = capacity
        self.sm_request = _frozen(sm_request)  # Σ reserved request per GPU
        self.sm_limit = _frozen(sm_limit)  # Σ limit per GPU
        self.memory_gb = _frozen(memory_gb)  # Σ memory per GPU
        self.count = _frozen(count)  # shares per GPU; 0 = idle (not counted as active)
        self.training = _frozen(training)  # training-gang shares per GPU (0 or 1)
        self._residents = residents
        self._placements = MappingProxyType(placements)  # type: ignore[arg-type]
        self._instances = MappingProxyType(instances)  # type: ignore[arg-type]
        self._functions = functions  # function -> names of its live instances
        self._moves = moves  # name -> times that live instance was moved

    @property
    def n_gpus(self) -> int:
        return len(self.count)

    @property
    def n_nodes(self) -> int:
        return self.n_gpus // self.capacity.gpus_per_node

    def node_of(self, gpu: int) -> int:
        return gpu // self.capacity.gpus_per_node

    def residents(self, gpu: int) -> Mapping[str, Share]:
        """Instance name -> its share, of everything on ``gpu``."""
        return MappingProxyType(self._residents[gpu])  # type: ignore[arg-type]

    @property
    def placements(self) -> Mapping[str, Placement]:
        return self._placements

    @property
    def instances(self) -> Mapping[str, GpuInstance]:
        return self._instances

    def replicas(self, function: str) -> frozenset[str]:
        """Names of the live instances of ``function``."""
        return frozenset(self._functions.get(function, ()))

    def moves_of(self, name: str) -> int:
        """How many times the live instance ``name`` has been moved."""
        return self._moves.get(name, 0)

    @property
    def active(self) -> np.ndarray:
        return self.count > 0


def _frozen(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


# --- feasibility, scores, tiers -------------------------------------------------------


def fits(view: ClusterView, request: float, limit: float, memory_gb: float) -> np.ndarray:
    """Per GPU: Σreq + request ≤ 1, Σlim + limit ≤ 1.5, Σmem + memory ≤ 40 (with EPS)."""
    c = view.capacity
    return (
        (view.sm_request + request <= c.sm + EPS)
        & (view.sm_limit + limit <= c.limit + EPS)
        & (view.memory_gb + memory_gb <= c.memory_gb + EPS)
    )


def dilu_score(view: ClusterView, request: float, memory_gb: float) -> np.ndarray:
    """0.6 · SM left + 0.4 · memory left after placing: low = the tightest fit."""
    c = view.capacity
    sm_left = 1.0 - (view.sm_request + request) / c.sm
    mem_left = 1.0 - (view.memory_gb + memory_gb) / c.memory_gb
    return SM_WEIGHT * sm_left + MEMORY_WEIGHT * mem_left


def sm_score(view: ClusterView, request: float, memory_gb: float) -> np.ndarray:
    """INFless's best fit: SM left after placing (memory ignored)."""
    return 1.0 - (view.sm_request + request) / view.capacity.sm


def best_gpu(view: ClusterView, candidates: np.ndarray, score: np.ndarray) -> int | None:
    """The lowest-scoring candidate (lowest index on ties), or None."""
    if not candidates.any():
        return None
    masked = np.where(candidates, score, np.inf)
    return int(np.argmin(masked))


def colocated_tier(view: ClusterView, inst: GpuInstance) -> np.ndarray:
    """Tier 1: GPUs of training gangs that already share a GPU with a replica of this function.

    The GPUs holding the replicas themselves are excluded, so replicas spread over the
    gang's GPUs. Functions are per ``service_name`` in the authors' files, where every
    name is unique, so there this tier is empty.
    """
    mask = np.zeros(view.n_gpus, dtype=bool)
    own: set[int] = set()
    for name in view.replicas(inst.function) - {inst.name}:
        for gpu in view.placements[name].gpus:
            own.add(gpu)
            for res in view.residents(gpu):
                if view.instances[res].kind is Kind.TRAINING:
                    mask[list(view.placements[res].gpus)] = True
    mask[list(own)] = False
    return mask


def candidate_tiers(view: ClusterView, inst: GpuInstance) -> tuple[np.ndarray, ...]:
    """Inference candidates in order: tier 1, then other active GPUs, then idle ones."""
    tier1 = colocated_tier(view, inst) & view.active
    return tier1, view.active & ~tier1, ~view.active


def place_in_tiers(
    view: ClusterView, inst: GpuInstance, request: float, limit: float, score: Score
) -> Placement | None:
    """Best fit in the first tier that has a feasible GPU (idle GPUs: the lowest index)."""
    mem = inst.memory_gb[0]
    ok = fits(view, request, limit, mem)
    tier1, others, _ = candidate_tiers(view, inst)
    for tier in (tier1, others):
        gpu = best_gpu(view, tier & ok, score(view, request, mem))
        if gpu is not None:
            return single(inst, gpu, request, limit)
    gpu = first_idle(view)
    return None if gpu is None else single(inst, gpu, request, limit)


def single(inst: GpuInstance, gpu: int, request: float, limit: float) -> Placement:
    return Placement(inst.name, (Share(gpu, request, limit, inst.memory_gb[0]),))


def first_idle(view: ClusterView) -> int | None:
    idle = np.flatnonzero(view.count == 0)
    return int(idle[0]) if len(idle) else None


# --- gangs and splits -----------------------------------------------------------------


def gang_first_fit(
    view: ClusterView, inst: GpuInstance, request: float, limit: float
) -> Placement | None:
    """The authors' gang rule: the first node with enough feasible active GPUs, else the
    first node whose feasible active plus idle GPUs suffice (active ones first)."""
    n, gpn = inst.gpu_num, view.capacity.gpus_per_node
    ok = fits(view, request, limit, max(inst.memory_gb))
    feasible_active = (ok & view.active).reshape(-1, gpn)
    idle = (~view.active).reshape(-1, gpn)
    for mask in (feasible_active, feasible_active | idle):
        nodes = np.flatnonzero(mask.sum(axis=1) >= n)
        if len(nodes):
            node = int(nodes[0])
            local = np.flatnonzero(feasible_active[node]).tolist()
            local += np.flatnonzero(idle[node]).tolist()
            return gang(inst, [node * gpn + i for i in local[:n]], request, limit)
    return None


def gang(inst: GpuInstance, gpus: Sequence[int], request: float, limit: float) -> Placement:
    shares = tuple(Share(g, request, limit, m) for g, m in zip(gpus, inst.memory_gb, strict=True))
    return Placement(inst.name, shares)


def memory_split(
    view: ClusterView, inst: GpuInstance, request: float, limit: float
) -> Placement | None:
    """Spread an LLM's memory over active GPUs of one node (the authors' fallback).

    Nodes in index order; on the first whose feasible active GPUs have enough free
    memory together, fill the fullest GPUs first. As in the authors' code, a GPU must
    have room for the full request and limit, and each piece reserves the request as
    both (a pipeline stage on every GPU, none of which bursts).
    """
    c, gpn = view.capacity, view.capacity.gpus_per_node
    free = c.memory_gb - view.memory_gb
    ok = fits(view, request, limit, 0.0) & view.active & (free > EPS)
    per_node = np.where(ok, free, 0.0).reshape(-1, gpn).sum(axis=1)
    nodes = np.flatnonzero(per_node >= inst.memory_gb[0] - EPS)
    if not len(nodes):
        return None
    node = int(nodes[0])
    gpus = [node * gpn + int(i) for i in np.flatnonzero(ok.reshape(-1, gpn)[node])]
    gpus.sort(key=lambda g: (-view.memory_gb[g], g))
    remaining, shares = inst.memory_gb[0], []
    for g in gpus:
        if remaining <= EPS:
            break
        piece = min(float(free[g]), remaining)
        shares.append(Share(g, request, request, piece))
        remaining -= piece
    return Placement(inst.name, tuple(shares))


# --- the policies -----------------------------------------------------------------------


class PlacementPolicy(ABC):
    """``place`` a new instance; optionally move live ones after a start or a delete.

    Moves run one by one, each releasing the instance's old shares before taking its
    new ones, so a plan must be feasible in that order (the mechanism checks it).
    """

    name: ClassVar[str]

    @abstractmethod
    def place(self, view: ClusterView, inst: GpuInstance) -> Placement | None:
        """Where ``inst`` runs, or None when no GPU of the cluster can take it."""

    def on_delete(self, view: ClusterView, deleted: GpuInstance) -> tuple[Move, ...]:
        """Moves to make after ``deleted`` left (``view`` no longer holds it). Default none."""
        return ()

    def after_place(self, view: ClusterView, placed: GpuInstance) -> tuple[Move, ...]:
        """Moves to make after ``placed`` started (``view`` holds it). Default none."""
        return ()


class ExclusivePolicy(PlacementPolicy):
    """One GPU (or a whole gang of GPUs) per instance, never shared."""

    name = "exclusive"

    def place(self, view: ClusterView, inst: GpuInstance) -> Placement | None:
        gpn = view.capacity.gpus_per_node
        if inst.gpu_num == 1:
            gpu = first_idle(view)
            return None if gpu is None else single(inst, gpu, inst.sm_request, inst.sm_limit)
        idle = (~view.active).reshape(-1, gpn)
        nodes = np.flatnonzero(idle.sum(axis=1) >= inst.gpu_num)
        if not len(nodes):
            return None
        node = int(nodes[0])
        local = np.flatnonzero(idle[node])[: inst.gpu_num]
        return gang(inst, [node * gpn + int(i) for i in local], inst.sm_request, inst.sm_limit)


class _Reserving(PlacementPolicy):
    """INFless: best fit on SM alone, reserving ``reserve(inst)`` as (request, limit)."""

    @abstractmethod
    def reserve(self, inst: GpuInstance, capacity: Capacity) -> tuple[float, float]: ...

    def place(self, view: ClusterView, inst: GpuInstance) -> Placement | None:
        req, lim = self.reserve(inst, view.capacity)
        if inst.kind is Kind.TRAINING:
            return gang_first_fit(view, inst, req, lim)
        return place_in_tiers(view, inst, req, lim, sm_score)


class InflessLimitPolicy(_Reserving):
    """INFless-l: reserve the limit (request := limit), so no instance ever bursts.

    A limit above one GPU's SMs (allowed up to the limit capacity) reserves the GPU.
    """

    name = "infless-l"

    def reserve(self, inst: GpuInstance, capacity: Capacity) -> tuple[float, float]:
        req = min(inst.sm_limit, capacity.sm)
        return req, req


class InflessRequestPolicy(_Reserving):
    """INFless-r: reserve only the request (limit := request): dense, but no burst room."""

    name = "infless-r"

    def reserve(self, inst: GpuInstance, capacity: Capacity) -> tuple[float, float]:
        return inst.sm_request, inst.sm_request


class DiluPolicy(PlacementPolicy):
    """Dilu's resourcing-complementary scheduling, as the authors' simulator runs it.

    Inference: best fit (0.6 SM + 0.4 memory) over the candidate tiers. LLM inference:
    best fit over active GPUs, else its memory split over one node's active GPUs, else
    an idle GPU. Training: :func:`gang_first_fit` (no score). Deviations from the
    authors' code: a delete releases what the instance reserved (the code releases a
    split piece's limit where it reserved the request, so its Σlimit drifts below
    what is placed); GPUs with no free memory get no piece (the code charges them the
    request for 0 GB); nodes are tried in index order and ties go to the lowest GPU
    index (the code iterates a ``set``, so its ties vary from run to run).
    """

    name = "dilu"

    def place(self, view: ClusterView, inst: GpuInstance) -> Placement | None:
        req, lim = inst.sm_request, inst.sm_limit
        if inst.kind is Kind.TRAINING:
            return gang_first_fit(view, inst, req, lim)
        if inst.kind is Kind.INFERENCE:
            return place_in_tiers(view, inst, req, lim, dilu_score)
        mem = inst.memory_gb[0]
        gpu = best_gpu(view, fits(view, req, lim, mem) & view.active, dilu_score(view, req, mem))
        if gpu is not None:
            return single(inst, gpu, req, lim)
        split = memory_split(view, inst, req, lim)
        if split is not None:
            return split
        idle = first_idle(view)
        return None if idle is None else single(inst, idle, req, lim)


class SchedulerName(StrEnum):
    """The ``--scheduler`` choices, in report order."""

    EXCLUSIVE = "exclusive"
    INFLESS_L = "infless-l"
    INFLESS_R = "infless-r"
    DILU = "dilu"
    REPACK = "repack"


def make_policy(name: str | SchedulerName, **options: object) -> PlacementPolicy:
    """The policy called ``name``; unknown names raise a ConfigError listing the choices.

    ``options`` go to ours (``repack``), e.g. ``move_budget``; baselines take none.
    """
    try:
        key = SchedulerName(name)
    except ValueError:
        choices = ", ".join(s.value for s in SchedulerName)
        raise ConfigError(f"unknown scheduler {name!r} (one of {choices}, all)",
                          field="--scheduler") from None  # fmt: skip
    if key is SchedulerName.REPACK:
        from batchwise.gpu.repack import RepackPolicy  # repack builds on this module

        return RepackPolicy(**options)  # type: ignore[arg-type]
    if options:
        raise ConfigError(f"{key.value} takes no options", field="--scheduler")
    return _BASELINES[key]()


_BASELINES: dict[SchedulerName, type[PlacementPolicy]] = {
    SchedulerName.EXCLUSIVE: ExclusivePolicy,
    SchedulerName.INFLESS_L: InflessLimitPolicy,
    SchedulerName.INFLESS_R: InflessRequestPolicy,
    SchedulerName.DILU: DiluPolicy,
}
