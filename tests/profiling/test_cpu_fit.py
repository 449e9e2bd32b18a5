"""The CPU profiler's fit and its guard against allotments measured under contention."""

from __future__ import annotations

import numpy as np
import pytest

from batchwise.profiling.cpu import fit, implausible_allotments

SIZES = (1, 2, 4, 8)


def cells_for(latency) -> dict[float, dict[int, list[float]]]:
    """Three samples per (allotment, batch) of ``latency(c, b)``, ±1 % noise."""
    return {c: {b: [latency(c, b) * f for f in (0.99, 1.0, 1.01)] for b in SIZES}
            for c in (0.5, 1.0, 1.5, 2.0)}  # fmt: skip


def clean(c: float, b: int) -> float:
    return 0.02 * b * np.exp(-c / 0.8) + 0.005 * b


def test_an_allotment_slower_than_less_cpu_is_implausible():
    assert implausible_allotments(cells_for(clean)) == []
    contended = cells_for(lambda c, b: clean(c, b) * (20.0 if c == 2.0 else 1.0))
    assert implausible_allotments(contended) == [2.0]
    one_size = cells_for(lambda c, b: clean(c, b) * (20.0 if (c, b) == (2.0, 8) else 1.0))
    assert implausible_allotments(one_size) == []  # one batch size is noise, not contention


def test_the_fit_through_clean_cells_reproduces_them():
    profile, points = fit(cells_for(clean))
    assert profile.vcpu_range == (0.5, 2.0)
    assert max(abs(p.avg_error) for p in points) < 0.05
    assert [p.mean_s for p in points if p.batch == 1] == pytest.approx(
        [clean(c, 1) for c in (0.5, 1.0, 1.5, 2.0)], rel=0.02
    )
