"""The pruning-search policies: the published Dilu cases, grid_best, the stop rules and
the training binary search, on the shipped grids and on small synthetic ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchwise.gpu.measure import GridMeasurer, Measurement
from batchwise.gpu.search import (
    TE_DROP,
    NoShareMeetsQos,
    Point,
    Stop,
    grid_best,
    grid_training_best,
    hybrid_search,
    te_gap,
    training_search,
)
from utils import DILU_DIR


def shipped(name: str) -> Path:
    """A Dilu grid CSV (the authors' measurements, copied into tests/data/dilu)."""
    return DILU_DIR / name


class Recording:
    """A synthetic grid that remembers every point asked for (repeats included)."""

    def __init__(self, points: dict[tuple[int, int], tuple[float, float]]) -> None:
        self.points = {k: Measurement(*v) for k, v in points.items()}
        self.calls: list[tuple[int, int]] = []

    def measure(self, batch: int, sm_percent: int) -> Measurement:
        self.calls.append((batch, sm_percent))
        return self.points[(batch, sm_percent)]


def full_grid(latency) -> dict[tuple[int, int], tuple[float, float]]:
    """Batches 1..64 × shares 10..100 with ``latency(batch, sm)``; throughput batch/latency."""
    return {(b, s): (latency(b, s), b / latency(b, s))
            for b in (1, 2, 4, 8, 16, 32, 64) for s in range(10, 101, 10)}  # fmt: skip


PUBLISHED = [  # file, QoS (s), (SM %, batch, measurements) from the paper, grid best (SM %, batch)
    ("resnet152.csv", 0.04, (30, 16, 9), (30, 16)),
    ("roberta_large.csv", 0.06, (20, 4, 6), (30, 4)),
    ("gpt2_large.csv", 0.06, (30, 4, 7), (30, 4)),
    ("llama2.csv", 0.042, (50, 8, 10), (50, 8)),
]


@pytest.mark.parametrize(("name", "qos", "triple", "best"), PUBLISHED)
def test_published_cases_are_reproduced(name, qos, triple, best):
    grid = GridMeasurer.from_csv(shipped(name))
    r = hybrid_search(grid, qos)
    assert (r.sm_percent, r.batch_size, r.measurements) == triple
    assert r.stop is Stop.QOS
    assert len({(p.batch_size, p.sm_percent) for p in r.trace}) == len(r.trace) == r.measurements
    assert r.pick.latency_s <= qos
    g = grid_best(grid.points, qos)
    assert g is not None and (g.sm_percent, g.batch_size) == best


def test_resnet152_trace_walks_the_qos_frontier():
    r = hybrid_search(GridMeasurer.from_csv(shipped("resnet152.csv")), 0.04)
    assert [(p.batch_size, p.sm_percent) for p in r.trace] == [
        (1, 10), (2, 10), (4, 10), (4, 20), (8, 20), (16, 20), (16, 30), (32, 30), (32, 40)
    ]  # fmt: skip
    assert r.pick_te == pytest.approx(400.345003 / 30)


def test_roberta_pick_is_eleven_percent_below_the_grid_best():
    grid = GridMeasurer.from_csv(shipped("roberta_large.csv"))
    r = hybrid_search(grid, 0.06)
    best = grid_best(grid.points, 0.06)
    assert best is not None
    assert best.te == pytest.approx(116.860617 / 30)
    assert te_gap(r.pick, best) == pytest.approx(1 - (69.276704 / 20) / (116.860617 / 30))
    assert 0.11 < te_gap(r.pick, best) < 0.112


def test_te_is_throughput_per_sm_percent():
    assert Point(4, 30, 0.01, 300.0).te == pytest.approx(10.0)


def test_grid_best_takes_the_highest_te_that_meets_the_qos():
    grid = {(1, 10): Measurement(0.01, 50.0),  # TE 5
            (2, 10): Measurement(0.09, 90.0),  # TE 9 but misses a QoS of 0.05
            (4, 20): Measurement(0.04, 160.0),  # TE 8: the best that meets it
            (2, 20): Measurement(0.02, 100.0)}  # fmt: skip
    best = grid_best(grid, 0.05)
    assert best is not None and (best.batch_size, best.sm_percent) == (4, 20)
    assert grid_best(grid, 0.005) is None
    tie = {(1, 10): Measurement(0.01, 100.0), (2, 20): Measurement(0.01, 200.0)}  # TE 10 both
    picked = grid_best(tie, 1.0)
    assert picked is not None and picked.sm_percent == 10  # ties: the smaller share


def test_batch_limit_keeps_the_best_and_measures_nothing_more():
    g = Recording(full_grid(lambda b, s: 0.001 * b))  # everything meets the QoS
    r = hybrid_search(g, 1.0)
    assert (r.sm_percent, r.batch_size, r.measurements, r.stop) == (10, 32, 6, Stop.BATCH_LIMIT)
    assert (64, 10) not in g.calls and len(g.calls) == 6
    small = hybrid_search(Recording(full_grid(lambda b, s: 0.001 * b)), 1.0, max_batch=8)
    assert (small.batch_size, small.measurements) == (8, 4)


def test_share_limit_keeps_the_best_and_measures_nothing_more():
    # batch 1 needs the whole device; batch 2 misses even there: the next share is 150 %
    g = Recording(full_grid(lambda b, s: 0.01 * b * 100 / s))
    r = hybrid_search(g, 0.015, sm_step=50)
    assert [(p.batch_size, p.sm_percent) for p in r.trace] == [(1, 50), (1, 100), (2, 100)]
    assert (r.sm_percent, r.batch_size, r.measurements, r.stop) == (100, 1, 3, Stop.SHARE_LIMIT)
    assert len(g.calls) == 3


def _te_case(raised_te: float) -> Recording:
    """Batch 2 misses at 10 %; at 20 % it meets the QoS with TE ``raised_te`` (last: 10)."""
    return Recording({(1, 10): (0.01, 100.0), (2, 10): (0.05, 40.0),
                      (2, 20): (0.015, raised_te * 20), (4, 20): (0.05, 80.0),
                      (4, 30): (0.05, 80.0)})  # fmt: skip


def test_te_drop_is_absolute_per_sm_percent():
    stopped = hybrid_search(_te_case(10 - TE_DROP - 0.01), 0.02)
    assert (stopped.sm_percent, stopped.batch_size, stopped.stop) == (10, 1, Stop.TE_DROP)
    assert stopped.measurements == 3  # the raised point that lost TE counts
    kept = hybrid_search(_te_case(10 - TE_DROP + 0.01), 0.02)
    assert (kept.sm_percent, kept.batch_size, kept.stop) == (20, 2, Stop.QOS)
    assert kept.measurements == 5


def test_no_share_meeting_the_qos_raises_with_the_trace():
    g = Recording(full_grid(lambda b, s: 0.5))
    with pytest.raises(NoShareMeetsQos, match=r"0\.1 s at batch 1") as exc:
        hybrid_search(g, 0.1)
    assert [p.sm_percent for p in exc.value.trace] == list(range(10, 101, 10))
    assert all(p.batch_size == 1 for p in exc.value.trace)


def test_a_point_asked_for_again_is_measured_and_counted_once():
    g = Recording({(8, 100): (0.1, 80.0)})
    r = training_search(g, 8, sm_step=100)  # the full share is both reference and pick
    assert (r.sm_percent, r.measurements) == (100, 1)
    assert g.calls == [(8, 100)]


def _training_grid(saturates_at: int, spike: int | None = None) -> Recording:
    """Throughput grows with the share up to ``saturates_at`` (a spike: a noisy point)."""
    pts = {}
    for s in range(10, 101, 10):
        thr = 100.0 * min(1.0, s / saturates_at)
        pts[(16, s)] = (16 / thr, 100.0 if s == spike else thr)
    return Recording(pts)


def test_training_binary_search_finds_the_smallest_share_keeping_98_percent():
    g = _training_grid(60)
    r = training_search(g, 16)
    assert (r.mode, r.sm_percent, r.batch_size, r.stop) == ("training", 60, 16, Stop.CONVERGED)
    assert [p.sm_percent for p in r.trace] == [100, 50, 80, 70, 60]
    assert r.measurements == 5 < 10
    best = grid_training_best(g.points, 16)
    assert best is not None and best.sm_percent == 60


def test_training_grid_best_is_exhaustive_where_the_binary_search_is_not():
    g = _training_grid(60, spike=30)  # 30 % reads full throughput, 50 % does not
    assert training_search(g, 16).sm_percent == 60
    best = grid_training_best(g.points, 16)
    assert best is not None and best.sm_percent == 30
    assert grid_training_best(g.points, 4) is None  # no batch 4 at 100 %


def test_invalid_parameters_are_refused():
    g = Recording(full_grid(lambda b, s: 0.01))
    for kw in ({"sm_step": 7}, {"sm_step": 0}, {"max_batch": 0}):
        with pytest.raises(ValueError):
            hybrid_search(g, 0.1, **kw)
    with pytest.raises(ValueError):
        hybrid_search(g, 0.0)
    with pytest.raises(ValueError):
        training_search(g, 0)
