"""Ours (``repack``): Dilu's complementary placement plus bounded draining of GPUs.

Why: at the peak nearly every active GPU holds a training gang member (they cannot
share: two members need at least 50 GB); the GPUs that hold none — an LLM alone, a
few inference instances left behind by deletes — are the waste. Dilu places each
instance once and never revisits it, so a GPU opened for an LLM stays open after its
neighbours leave, while gangs that started later have room for exactly what it
holds. Ours differs from Dilu in three ways (training gangs are placed as Dilu does):

1. **Inference goes to training GPUs first** (best fit by Dilu's score within that
   tier, then any active GPU, then the lowest idle one): a gang lives 10–15 minutes
   or for good, inference 1–3, so a gang's leftover room is the stable place to fill.
2. **An LLM that fits no active GPU splits over the node that needs the fewest
   pieces** (then the least memory left over; Dilu takes the first node with room).
   A piece reserves what Dilu's split reserves — the request, as request and limit
   — and is checked against that; Dilu's code checks room for the full limit, which
   it then does not reserve. ``split_check="limit"`` keeps Dilu's stricter check.
3. **Drain after deletes and after starts that opened a GPU**: try the active GPUs
   that hold no training share, fewest residents first; a GPU is drained only if
   *all* its residents can restart on other active GPUs (best fit, training GPUs
   first, or an LLM split), so each accepted drain idles a GPU and opens none. A
   start onto GPUs that were already active adds no room, so every drain that failed
   before it would fail again: those starts skip the drain.

What may move, and when: only inference and LLM-inference instances (never a
training gang), only to empty a whole GPU, only onto GPUs already active, right after
a delete or a start that opened a GPU. Budget: at most ``move_budget`` instances
restarted and ``drain_tries`` GPUs tried per event, and no instance moves more than
``max_moves_per_instance`` times in its life (each move is a cold start).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from batchwise.gpu.placement import (
    EPS,
    MEMORY_WEIGHT,
    SM_WEIGHT,
    ClusterView,
    Move,
    Placement,
    PlacementPolicy,
    Share,
    candidate_tiers,
    first_idle,
    gang_first_fit,
)
from batchwise.gpu.workload import GpuInstance, Kind

DEFAULT_MOVE_BUDGET = 8
"""Most instances restarted elsewhere after one event (cold starts per event)."""
DEFAULT_DRAIN_TRIES = 8
"""Most GPUs tried for draining after one event (bounds the policy's work per event)."""
DEFAULT_MAX_MOVES_PER_INSTANCE = 3
"""Most times one instance is restarted elsewhere over its life."""


class SplitCheck(StrEnum):
    """What room a GPU must have to take a piece of a split LLM."""

    RESERVED = "reserved"  # the request (as request and limit): what a piece reserves
    LIMIT = "limit"  # the request and the full limit: Dilu's code


class Scratch:
    """Copies of the view's sums over the GPUs of active nodes, to try plans on.

    Local index ``i`` is GPU ``gpus[i]``; nodes stay contiguous (``gpus_per_node``
    GPUs each), so node-wise sums are a reshape. Idle nodes are left out: nothing
    ours tries (best fit on active GPUs, splits over active GPUs) can use them.
    """

    def __init__(self, view: ClusterView) -> None:
        c, gpn = view.capacity, view.capacity.gpus_per_node
        nodes = np.flatnonzero(view.count.reshape(-1, gpn).sum(axis=1) > 0)
        self.capacity = c
        self.gpus = (nodes[:, None] * gpn + np.arange(gpn)).ravel()
        self.local = np.full(view.n_gpus, -1, dtype=np.int64)  # GPU -> local index
        self.local[self.gpus] = np.arange(len(self.gpus))
        self.req = view.sm_request[self.gpus].copy()
        self.lim = view.sm_limit[self.gpus].copy()
        self.mem = view.memory_gb[self.gpus].copy()
        self.count = view.count[self.gpus].copy()
        self.train = view.training[self.gpus] > 0

    def fits(self, req: float, lim: float, mem: float) -> np.ndarray:
        c = self.capacity
        return ((self.req + req <= c.sm + EPS) & (self.lim + lim <= c.limit + EPS)
                & (self.mem + mem <= c.memory_gb + EPS))  # fmt: skip

    def score(self, req: float, mem: float) -> np.ndarray:
        """Dilu's best-fit score on the scratch sums."""
        c = self.capacity
        return (SM_WEIGHT * (1.0 - (self.req + req) / c.sm)
                + MEMORY_WEIGHT * (1.0 - (self.mem + mem) / c.memory_gb))  # fmt: skip

    def apply(self, p: Placement, sign: int) -> None:
        """Add (+1) or remove (-1) a placement whose GPUs all lie on active nodes."""
        for s in p.shares:
            i = self.local[s.gpu]
            self.req[i] += sign * s.sm_request
            self.lim[i] += sign * s.sm_limit
            self.mem[i] += sign * s.memory_gb
            self.count[i] += sign


def _best(mask: np.ndarray, score: np.ndarray) -> int | None:
    if not mask.any():
        return None
    return int(np.argmin(np.where(mask, score, np.inf)))


def best_single(s: Scratch, inst: GpuInstance, allowed: np.ndarray) -> Placement | None:
    """Best fit on an allowed active GPU, training GPUs first; None if none fits."""
    req, lim, mem = inst.sm_request, inst.sm_limit, inst.memory_gb[0]
    ok = s.fits(req, lim, mem) & allowed & (s.count > 0)
    score = s.score(req, mem)
    for tier in (ok & s.train, ok):
        i = _best(tier, score)
        if i is not None:
            return Placement(inst.name, (Share(int(s.gpus[i]), req, lim, mem),))
    return None


def fewest_pieces_split(
    s: Scratch, inst: GpuInstance, allowed: np.ndarray, check: SplitCheck
) -> Placement | None:
    """An LLM's memory over active GPUs of one node: the node needing the fewest pieces
    (then the least memory left over), its GPUs with the most free memory first."""
    gpn = s.capacity.gpus_per_node
    req, need = inst.sm_request, inst.memory_gb[0]
    free = s.capacity.memory_gb - s.mem
    room = inst.sm_limit if check is SplitCheck.LIMIT else req
    ok = s.fits(req, room, 0.0) & allowed & (s.count > 0) & (free > EPS)
    by_node = np.where(ok, free, 0.0).reshape(-1, gpn)
    totals = by_node.sum(axis=1)
    nodes = np.flatnonzero(totals >= need - EPS)
    if not len(nodes):
        return None
    ranked = -np.sort(-by_node[nodes], axis=1)
    pieces = (np.cumsum(ranked, axis=1) < need - EPS).sum(axis=1) + 1
    node = int(nodes[np.lexsort((totals[nodes] - need, pieces))[0]])
    local = [node * gpn + int(j) for j in np.flatnonzero(ok.reshape(-1, gpn)[node])]
    local.sort(key=lambda i: (-float(free[i]), i))
    shares, remaining = [], need
    for i in local:
        if remaining <= EPS:
            break
        piece = min(float(free[i]), remaining)
        shares.append(Share(int(s.gpus[i]), req, req, piece))
        remaining -= piece
    return Placement(inst.name, tuple(shares))


class RepackPolicy(PlacementPolicy):
    """See the module docstring: Dilu's tiers, training-first, fewest-piece splits, drains."""

    name = "repack"

    def __init__(
        self,
        move_budget: int = DEFAULT_MOVE_BUDGET,
        drain_tries: int = DEFAULT_DRAIN_TRIES,
        max_moves_per_instance: int = DEFAULT_MAX_MOVES_PER_INSTANCE,
        split_check: SplitCheck | str = SplitCheck.RESERVED,
    ) -> None:
        if move_budget < 0 or drain_tries < 0 or max_moves_per_instance < 0:
            raise ValueError("move_budget, drain_tries and max_moves_per_instance are >= 0")
        self.move_budget = move_budget
        self.drain_tries = drain_tries
        self.max_moves_per_instance = max_moves_per_instance
        self.split_check = SplitCheck(split_check)

    def place(self, view: ClusterView, inst: GpuInstance) -> Placement | None:
        if inst.kind is Kind.TRAINING:
            return gang_first_fit(view, inst, inst.sm_request, inst.sm_limit)
        s = Scratch(view)
        allowed = np.ones(len(s.gpus), dtype=bool)
        p = self._tier1(view, s, inst) or best_single(s, inst, allowed)
        if p is None and inst.kind is Kind.LLM_INFERENCE:
            p = fewest_pieces_split(s, inst, allowed, self.split_check)
        if p is None:
            gpu = first_idle(view)
            if gpu is None:
                return None
            p = Placement(inst.name, (Share(gpu, inst.sm_request, inst.sm_limit,
                                            inst.memory_gb[0]),))  # fmt: skip
        return p

    def _tier1(self, view: ClusterView, s: Scratch, inst: GpuInstance) -> Placement | None:
        """Dilu's first tier (next to a replica's training gang), when one exists."""
        if not view.replicas(inst.function) - {inst.name}:
            return None
        tier1 = candidate_tiers(view, inst)[0][s.gpus]
        return best_single(s, inst, tier1) if tier1.any() else None

    def on_delete(self, view: ClusterView, deleted: GpuInstance) -> tuple[Move, ...]:
        return self.drain(view)

    def after_place(self, view: ClusterView, placed: GpuInstance) -> tuple[Move, ...]:
        """Drain only when ``placed`` opened a GPU: a start onto active GPUs adds no room,
        so every drain that failed before it would fail again."""
        if all(view.count[g] > 1 for g in view.placements[placed.name].gpus):
            return ()
        return self.drain(view)

    def drain(self, view: ClusterView) -> tuple[Move, ...]:
        """Empty GPUs that hold no training share, whole or not at all, within budget."""
        s = Scratch(view)
        budget, tries = self.move_budget, self.drain_tries
        targets = np.ones(len(s.gpus), dtype=bool)  # may receive a moved instance
        drainable = np.ones(len(s.gpus), dtype=bool)  # its view residents are still true
        moves: list[Move] = []
        for i in self._drain_order(s):
            # invariant: s = the view plus every move in `moves`; budget, tries >= 0
            if tries == 0 or budget == 0:
                break
            if not drainable[i] or s.count[i] > budget:
                continue
            tries -= 1
            plan = self._drain_one(view, s, i, targets)
            if plan is None:
                continue
            moves += plan
            budget -= len(plan)
            targets[i] = False
            for m in plan:
                for g in (*m.to.gpus, *view.placements[m.instance].gpus):
                    drainable[s.local[g]] = False
        return tuple(moves)

    @staticmethod
    def _drain_order(s: Scratch) -> Sequence[int]:
        cands = np.flatnonzero((s.count > 0) & ~s.train)
        return sorted(cands.tolist(), key=lambda i: (int(s.count[i]), float(s.mem[i]), i))

    def _drain_one(
        self, view: ClusterView, s: Scratch, i: int, allowed: np.ndarray
    ) -> list[Move] | None:
        """Moves that empty local GPU ``i`` (largest resident first), applied to ``s``."""
        gpu = int(s.gpus[i])
        names = sorted(view.residents(gpu), key=lambda n: (-view.instances[n].total_memory_gb, n))
        if any(view.moves_of(n) >= self.max_moves_per_instance for n in names):
            return None
        old = [view.placements[n] for n in names]
        for p in old:
            s.apply(p, -1)
        targets = allowed.copy()
        for p in old:  # moves run one by one: none may count on room another frees
            targets[s.local[list(p.gpus)]] = False
        done: list[Placement] = []
        for n in names:
            inst = view.instances[n]
            p = best_single(s, inst, targets)
            if p is None and inst.kind is Kind.LLM_INFERENCE:
                p = fewest_pieces_split(s, inst, targets, self.split_check)
            if p is None:
                for q in done:
                    s.apply(q, -1)
                for q in old:
                    s.apply(q, +1)
                return None
            s.apply(p, +1)
            done.append(p)
        return [Move(p.instance, p) for p in done]
