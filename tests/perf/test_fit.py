"""Fitting latency-model parameters from profiling samples."""

from __future__ import annotations

import numpy as np
import pytest

from batchwise.perf.fit import Sample, fit_cpu_profile, fit_exponential, fit_gpu_profile
from batchwise.perf.latency import cpu_avg, cpu_max, gpu_avg

VGG_AVG = [
    (1.8260695578676214, 0.5283726420022545, 0.18015427168547402),
    (4.849070286817897, 0.4322505914521466, 0.3644750704985931),
]


def test_fit_exponential_recovers_exact_parameters():
    c = np.arange(0.25, 4.01, 0.25)
    alpha, beta, gamma = VGG_AVG[0]
    lat = alpha * np.exp(-c / beta) + gamma
    got = fit_exponential(c, lat)
    assert got == pytest.approx(VGG_AVG[0], rel=1e-4)


def test_fit_exponential_needs_three_sizes():
    with pytest.raises(ValueError, match=">= 3"):
        fit_exponential(np.array([1.0, 2.0]), np.array([0.5, 0.3]))


def test_fit_cpu_profile_from_noisy_samples(vgg19):
    rng = np.random.default_rng(1)
    sizes = np.arange(0.5, 4.01, 0.25)
    samples = []
    for b, (alpha, beta, gamma) in enumerate(VGG_AVG, start=1):
        for c in sizes:
            mean = alpha * np.exp(-c / beta) + gamma
            for x in rng.uniform(0.95, 1.05, size=40) * mean:
                samples.append(Sample(b, float(c), float(x)))
    prof = fit_cpu_profile(samples, memory_base_mb=807.6, memory_per_item_mb=36.6)
    assert prof.max_batch == 2
    assert prof.memory_base_mb == 807.6
    for b in (1, 2):
        want = cpu_avg(vgg19.cpu, b, sizes)
        assert cpu_avg(prof, b, sizes) == pytest.approx(want, rel=0.02)
        # "max" is fitted to a high quantile, so it lies above the average.
        assert np.all(cpu_max(prof, b, sizes) > cpu_avg(prof, b, sizes))


def test_fit_cpu_profile_rejects_gaps_and_bad_samples():
    s = [Sample(1, c, 0.5 / c) for c in (1.0, 2.0, 3.0)] + [
        Sample(3, c, 1.0 / c) for c in (1.0, 2.0, 3.0)
    ]
    with pytest.raises(ValueError, match="contiguously"):
        fit_cpu_profile(s, memory_base_mb=512)
    with pytest.raises(ValueError, match="invalid sample"):
        fit_cpu_profile([Sample(1, 1.0, -0.1)], memory_base_mb=512)


def test_fit_gpu_profile_recovers_linear_l0(vgg19):
    xi1, xi2 = 0.001679844365532822, 0.002113091944793135
    samples = [
        Sample(b, m, float(24 / m * (xi1 * b + xi2))) for b in (1, 4, 8, 16) for m in (2, 6, 12, 24)
    ]
    prof = fit_gpu_profile(samples, memory_steps=[0])
    assert prof.per_item_s == pytest.approx(xi1, rel=1e-9)
    assert prof.base_s == pytest.approx(xi2, rel=1e-6)
    assert prof.memory_steps == [0]
    assert float(gpu_avg(prof, 13, 2, 2 / 3)) == pytest.approx(
        float(gpu_avg(vgg19.gpu, 13, 2, 2 / 3)), rel=1e-6
    )
    with pytest.raises(ValueError, match=">= 2 batch sizes"):
        fit_gpu_profile([Sample(4, 2, 0.1), Sample(4, 6, 0.05)])
