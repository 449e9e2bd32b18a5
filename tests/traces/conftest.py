"""Shared fixtures for the traces tests: fixture-file paths and the trace invariant."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from batchwise.traces.base import ArrivalTrace

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``tests/data``: fixtures copied from public traces (see SOURCES.md there)."""
    return DATA_DIR


def check_trace(trace: ArrivalTrace) -> None:
    """Assert the ArrivalTrace invariants: 1-D float64, sorted, inside [0, duration)."""
    for app, times in trace.arrivals.items():
        assert times.ndim == 1 and times.dtype == np.float64, app
        if times.size:
            assert np.all(np.diff(times) >= 0), f"{app}: not sorted"
            assert times[0] >= 0.0, f"{app}: negative time {times[0]}"
            assert times[-1] < trace.duration_s, f"{app}: {times[-1]} >= {trace.duration_s}"


@pytest.fixture(scope="session")
def valid() -> Callable[[ArrivalTrace], None]:
    """The invariant checker, as a fixture so test modules need no shared import.

    Session-scoped so hypothesis tests may use it (it holds no state).
    """
    return check_trace
