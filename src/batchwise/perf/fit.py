"""Fit latency-model parameters from raw profiling measurements (scipy least squares).

Why: later issues profile real models (ONNX Runtime, PyTorch) on real functions;
this turns ``(batch, resources, latency)`` samples into a :class:`CpuProfile` /
:class:`GpuProfile` the planners can use. Average latency is fitted to the mean
of each (batch, size) cell and "max" latency to a high quantile of it (the
paper's max is an upper envelope; a quantile is robust to one-off outliers).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from batchwise.config.profiles import CpuProfile, GpuProfile

MAX_QUANTILE = 0.99
"""Quantile of each cell's samples that the "max" model is fitted to."""


@dataclass(frozen=True)
class Sample:
    """One measurement: ``size`` is vCPUs (CPU) or GPU memory in GB (GPU)."""

    batch: int
    size: float
    latency_s: float


def _cells(samples: Iterable[Sample]) -> dict[int, dict[float, list[float]]]:
    cells: dict[int, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        if s.batch < 1 or s.size <= 0 or not np.isfinite(s.latency_s) or s.latency_s <= 0:
            raise ValueError(f"invalid sample {s}: batch >= 1, size > 0, latency > 0 required")
        cells[s.batch][float(s.size)].append(s.latency_s)
    return cells


def fit_exponential(c: np.ndarray, lat: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``lat ≈ alpha exp(-c / beta) + gamma`` with beta > 0, gamma >= 0."""
    if len(c) < 3:
        raise ValueError("need measurements at >= 3 distinct sizes to fit alpha, beta, gamma")
    gamma0 = float(lat.min()) * 0.9
    alpha0 = max(float(lat.max() - gamma0), 1e-6) * float(np.exp(c.min()))
    beta0 = max(float(c.mean()), 0.1)

    def resid(p: np.ndarray) -> np.ndarray:
        return p[0] * np.exp(-c / p[1]) + p[2] - lat

    res = least_squares(
        resid, x0=[alpha0, beta0, gamma0], bounds=([0, 1e-3, 0], [np.inf, np.inf, np.inf])
    )
    a, b, g = res.x
    return float(a), float(b), float(g)


def fit_cpu_profile(
    samples: Iterable[Sample], memory_base_mb: float, memory_per_item_mb: float = 0.0
) -> CpuProfile:
    """One exponential per batch size 1..B for avg and max; batches must be contiguous from 1."""
    cells = _cells(samples)
    batches = sorted(cells)
    if batches != list(range(1, len(batches) + 1)):
        raise ValueError(f"CPU samples must cover batch sizes 1..B contiguously, got {batches}")
    avg, mx = [], []
    for b in batches:
        sizes = np.array(sorted(cells[b]))
        means = np.array([np.mean(cells[b][s]) for s in sizes])
        highs = np.array([np.quantile(cells[b][s], MAX_QUANTILE) for s in sizes])
        avg.append(fit_exponential(sizes, means))
        mx.append(fit_exponential(sizes, highs))
    return CpuProfile(
        avg=avg, max=mx, memory_base_mb=memory_base_mb, memory_per_item_mb=memory_per_item_mb
    )


def fit_gpu_profile(samples: Iterable[Sample], total_memory_gb: int = 24, **extra) -> GpuProfile:
    """Fit ``L0(b) = xi1 b + xi2`` from average latencies under time slicing (L = (M/m) L0)."""
    cells = _cells(samples)
    bs, l0 = [], []
    for b, by_size in cells.items():
        for m, lats in by_size.items():
            bs.append(b)
            l0.append(float(np.mean(lats)) * m / total_memory_gb)
    if len(set(bs)) < 2:
        raise ValueError("need measurements at >= 2 batch sizes to fit xi1 and xi2")
    xi1, xi2 = np.polyfit(np.asarray(bs, float), np.asarray(l0), 1)
    return GpuProfile(
        per_item_s=float(xi1), base_s=float(xi2), total_memory_gb=total_memory_gb, **extra
    )
