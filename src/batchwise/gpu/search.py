"""Dilu's profiling by pruning search: the (SM %, batch) a GPU function should be given.

Why a search and not the grid: measuring all 10 shares × 6 batch sizes of a model
costs 60 runs; latency falls with the share and rises with the batch, so walking the
grid's QoS frontier from the small corner finds a good point in 6–10 runs
(``../shared/papers/dilu.md`` §1). Two policies live here, both pure (no I/O, no
clock): they only call a :class:`~batchwise.gpu.measure.Measurer`, so the same code
runs on a replayed grid, on a GPU under MPS and on this machine's CPUs.

* :func:`hybrid_search` (inference, a latency target): the smallest share that meets
  the QoS at batch 1, then double the batch while it still meets it, raising the share
  one step when it does not, and stop when a raised share still misses the QoS or
  loses more than :data:`TE_DROP` of efficiency.
* :func:`training_search` (training, a fixed batch): binary search for the smallest
  share that keeps :data:`TRAINING_KEEP` of the full device's throughput.

Efficiency is ``TE = throughput / SM percent`` (30, not 0.3) and the early stop is an
absolute drop of :data:`TE_DROP` in TE. The published results rule out TE per
fraction of the device: its values are 100× larger, so RoBERTa's and GPT2's first
raised share (TE down 0.03 and 0.16 per percent) would stop them at (10, 2) and (10, 1).

**What counts as a measurement**: every distinct (batch, share) point the search
evaluates, once, including the point that ends it (the raised share that still misses
the QoS); reading a point's TE after its latency is the same measurement, and a stop
because the next batch or share is out of range measures nothing. This gives the
published counts exactly: ResNet152 9, RoBERTa 6, GPT2 7, LLaMA2 10. The published
search never asks for a point twice (each step raises the batch or the share), so
those counts cannot say whether a repeat would count; here a point asked for again is
answered from its first measurement and not counted (the training search reads its
pick again at the end, a point it has always measured already).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from batchwise.gpu.measure import Measurement, Measurer

SM_STEP = 10
"""Share step (SM percent): the search raises the share by this much."""
MAX_SHARE = 100
"""The whole device (SM percent): no share beyond it is ever measured."""
MAX_BATCH = 32
"""Largest batch the inference search tries (batches double from 1)."""
TE_DROP = 0.2
"""Early stop: a raised share whose TE is below the last accepted TE minus this
(absolute, in throughput per SM percent) is not worth its extra share."""
TRAINING_KEEP = 0.98
"""Training keeps at least this fraction of the full device's throughput."""


class Stop(StrEnum):
    """Why a search ended (reported, and what the stop-rule tests check)."""

    BATCH_LIMIT = "batch-limit"  # the next batch would exceed max_batch: nothing measured
    SHARE_LIMIT = "share-limit"  # the next share would exceed 100 %: nothing measured
    QOS = "qos"  # the raised share still missed the QoS
    TE_DROP = "te-drop"  # the raised share met the QoS but lost more than TE_DROP
    CONVERGED = "converged"  # training: the binary search closed on one share


@dataclass(frozen=True)
class Point:
    """One measured (batch, share) point."""

    batch_size: int
    sm_percent: int
    latency_s: float  # seconds per batch (LLaMA2's grid: per token)
    throughput: float  # items per second

    @property
    def te(self) -> float:
        """Throughput per SM percent: what a share buys."""
        return self.throughput / self.sm_percent

    def to_dict(self) -> dict[str, float | int]:
        return {"batch_size": self.batch_size, "sm_percent": self.sm_percent,
                "latency_s": self.latency_s, "throughput": self.throughput,
                "te": round(self.te, 4)}  # fmt: skip


@dataclass(frozen=True)
class SearchResult:
    """The pick of one search and how it got there."""

    mode: str  # "inference" | "training"
    sm_percent: int  # the share picked; a point of ``trace``
    batch_size: int  # the batch picked; with sm_percent, a point of ``trace``
    measurements: int  # distinct points measured == len(trace)
    trace: tuple[Point, ...]  # every point measured, in the order measured, once each
    stop: Stop  # why the search ended

    @property
    def pick(self) -> Point:
        key = (self.batch_size, self.sm_percent)
        return next(p for p in self.trace if (p.batch_size, p.sm_percent) == key)

    @property
    def pick_te(self) -> float:
        return self.pick.te


class NoShareMeetsQos(ValueError):
    """Even the whole device misses the QoS at batch 1: no point can be picked."""

    def __init__(self, qos_s: float, trace: tuple[Point, ...]) -> None:
        self.qos_s, self.trace = qos_s, trace
        fastest = min(trace, key=lambda p: p.latency_s)
        super().__init__(f"no share up to {MAX_SHARE} % meets the QoS of {qos_s:g} s at "
                         f"batch 1 (fastest: {fastest.latency_s:.6g} s at "
                         f"{fastest.sm_percent} % SM)")  # fmt: skip


class _Probe:
    """Measures each point once and remembers the order: the trace and the count."""

    def __init__(self, measurer: Measurer) -> None:
        self._measurer = measurer
        self._seen: dict[tuple[int, int], Point] = {}

    def __call__(self, batch: int, sm_percent: int) -> Point:
        key = (batch, sm_percent)
        if key not in self._seen:
            m = self._measurer.measure(batch, sm_percent)
            if not (m.latency_s > 0 and m.throughput > 0):  # TE and QoS need both positive
                raise ValueError(f"measurement at batch {batch}, {sm_percent} % SM is not "
                                 f"positive: {m}")  # fmt: skip
            self._seen[key] = Point(batch, sm_percent, m.latency_s, m.throughput)
        return self._seen[key]

    @property
    def trace(self) -> tuple[Point, ...]:
        return tuple(self._seen.values())  # dicts keep insertion (= measurement) order

    def result(self, mode: str, pick: Point, stop: Stop) -> SearchResult:
        trace = self.trace
        return SearchResult(mode, pick.sm_percent, pick.batch_size, len(trace), trace, stop)


def shares(sm_step: int = SM_STEP) -> range:
    """The shares a search may measure: sm_step, 2·sm_step, …, 100 (SM percent)."""
    if not 1 <= sm_step <= MAX_SHARE or MAX_SHARE % sm_step:
        raise ValueError(f"sm_step must divide {MAX_SHARE}, got {sm_step}")
    return range(sm_step, MAX_SHARE + 1, sm_step)


def hybrid_search(
    measurer: Measurer, qos_s: float, *, max_batch: int = MAX_BATCH, sm_step: int = SM_STEP,
    te_drop: float = TE_DROP,
) -> SearchResult:  # fmt: skip
    """The inference pick: the largest batch reachable on the QoS frontier, cheaply.

    Raises :class:`NoShareMeetsQos` when batch 1 misses ``qos_s`` even at 100 %.
    """
    if not qos_s > 0 or max_batch < 1:
        raise ValueError(f"need qos_s > 0 and max_batch >= 1, got {qos_s}, {max_batch}")
    probe = _Probe(measurer)
    best = _smallest_share(probe, qos_s, shares(sm_step))
    best, stop = _grow(probe, best, qos_s, max_batch, sm_step, te_drop)
    return probe.result("inference", best, stop)


def _smallest_share(probe: _Probe, qos_s: float, levels: range) -> Point:
    """Phase 1: raise the share at batch 1 until the QoS is met."""
    for sm in levels:
        p = probe(1, sm)
        if p.latency_s <= qos_s:
            return p
    raise NoShareMeetsQos(qos_s, probe.trace)


def _grow(
    probe: _Probe, best: Point, qos_s: float, max_batch: int, sm_step: int, te_drop: float
) -> tuple[Point, Stop]:
    """Phase 2: double the batch; when it misses the QoS, try one share step more."""
    while True:
        # Invariant: best meets the QoS, is the last point accepted, and its share is
        # the share in use; the next batch to try is twice its batch.
        batch = best.batch_size * 2
        if batch > max_batch:
            return best, Stop.BATCH_LIMIT
        same = probe(batch, best.sm_percent)
        if same.latency_s <= qos_s:
            best = same
            continue
        share = best.sm_percent + sm_step
        if share > MAX_SHARE:
            return best, Stop.SHARE_LIMIT
        raised = probe(batch, share)
        if raised.latency_s > qos_s:
            return best, Stop.QOS
        if raised.te < best.te - te_drop:
            return best, Stop.TE_DROP
        best = raised


def training_search(
    measurer: Measurer, batch: int, *, sm_step: int = SM_STEP, keep: float = TRAINING_KEEP
) -> SearchResult:
    """The training pick: the smallest share keeping ``keep`` of the 100 % throughput.

    Why binary: a training job has no latency target, only a throughput it should not
    lose, and throughput grows with the share (assumed monotone, as on every shipped
    grid), so about log2(10) + 1 runs find the knee.
    """
    if batch < 1 or not 0 < keep <= 1:
        raise ValueError(f"need batch >= 1 and 0 < keep <= 1, got {batch}, {keep}")
    probe = _Probe(measurer)
    levels = shares(sm_step)
    target = keep * probe(batch, MAX_SHARE).throughput
    lo, hi = 0, len(levels) - 1
    while lo < hi:
        # Invariant: levels[hi] keeps the target; every level below lo was measured
        # below it (so, throughput being monotone, the answer is in levels[lo..hi]).
        mid = (lo + hi) // 2
        if probe(batch, levels[mid]).throughput >= target:
            hi = mid
        else:
            lo = mid + 1
    return probe.result("training", probe(batch, levels[hi]), Stop.CONVERGED)


Grid = Mapping[tuple[int, int], Measurement]
"""A full latency grid: ``(batch, SM percent) -> Measurement``."""


def grid_best(grid: Grid, qos_s: float) -> Point | None:
    """The point of the whole grid with the highest TE that meets ``qos_s`` (None: none).

    What the search is judged against: the pick an exhaustive 60-run profile would
    make. Ties go to the smaller share, then the smaller batch.
    """
    meets = [_point(k, m) for k, m in grid.items() if m.latency_s <= qos_s]
    return max(meets, key=lambda p: (p.te, -p.sm_percent, -p.batch_size), default=None)


def grid_training_best(grid: Grid, batch: int, keep: float = TRAINING_KEEP) -> Point | None:
    """The smallest share of the whole grid keeping ``keep`` of the 100 % throughput.

    Exhaustive (no monotonicity assumed), so it shows when the binary search was
    misled. None when the grid lacks the batch at 100 %.
    """
    full = grid.get((batch, MAX_SHARE))
    if full is None:
        return None
    keeps = [_point(k, m) for k, m in grid.items()
             if k[0] == batch and m.throughput >= keep * full.throughput]  # fmt: skip
    return min(keeps, key=lambda p: p.sm_percent)


def te_gap(pick: Point, best: Point) -> float:
    """How much TE the pick gives up against the grid's best (0: none; 0.1: 10 %)."""
    return (best.te - pick.te) / best.te


def _point(key: tuple[int, int], m: Measurement) -> Point:
    return Point(key[0], key[1], m.latency_s, m.throughput)
