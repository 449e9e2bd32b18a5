"""Service-time distribution used by the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from batchwise.perf.service import draw_service_time, service_time_bounds


def test_bounds_are_symmetric_around_the_average():
    assert service_time_bounds(0.3, 0.4) == pytest.approx((0.2, 0.4))
    # Never negative: the half-width is capped at the average.
    assert service_time_bounds(0.1, 0.5) == pytest.approx((0.0, 0.2))
    # max <= avg: deterministic.
    assert service_time_bounds(0.3, 0.2) == (0.3, 0.3)


def test_draws_have_the_average_as_mean_and_never_exceed_max():
    rng = np.random.default_rng(0)
    draws = np.array([draw_service_time(0.3, 0.4, rng) for _ in range(20_000)])
    assert draws.max() <= 0.4 and draws.min() >= 0.2
    assert draws.mean() == pytest.approx(0.3, abs=2e-3)
    assert draw_service_time(0.3, 0.3, rng) == 0.3
