"""Cost per batch and per request under both price books, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import poisson

from batchwise.perf.cost import (
    batch_cost,
    batch_size_pmf,
    billed_duration,
    expected_batch_size,
    expected_cost_per_request,
    full_batch_cost_per_request,
    unit_price,
)
from batchwise.perf.functions import cpu_function, gpu_function
from batchwise.perf.latency import LatencyModel

# Price books, written out (README "Cost models").
FC_VCPU, FC_MEM, FC_GPU, FC_INV = 0.00009, 0.000009, 0.00011, 0.009 / 10_000
K1, K2, K3 = 1.3e-5, 1.5e-5, 1.3e-7
VGG_L0_B13 = 0.001679844365532822 * 13 + 0.002113091944793135


def test_billed_duration_gpu_ceil_and_exact():
    assert float(billed_duration(0.2874, 1.0)) == 1.0
    assert float(billed_duration(1.0, 1.0)) == 1.0  # a whole second is not rounded up again
    assert float(billed_duration(1.2, 1.0)) == 2.0
    assert float(billed_duration(0.26, 0.1)) == pytest.approx(0.3)
    assert billed_duration(0.2874, 0.0) == 0.2874  # granularity 0: exact
    got = billed_duration(np.array([0.1, 1.0, 1.01]), 1.0)
    assert np.array_equal(got, [1.0, 1.0, 2.0])


def test_cpu_batch_cost_fc_by_hand(vgg19, prices_fc):
    fn = cpu_function(vgg19, 1, 1.6, prices_fc)
    assert fn is not None and fn.memory_gb == 1.625
    lat = 1.8260695578676214 * math.exp(-1.6 / 0.5283726420022545) + 0.18015427168547402
    # CPU durations are billed exactly: 1.6 vCPU and 1.625 GB for L seconds, plus the fee.
    want = FC_INV + (1.6 * FC_VCPU + 1.625 * FC_MEM) * lat
    assert want == pytest.approx(4.34978e-5, rel=1e-5)  # 9e-7 + 1.58625e-4 * 0.268544
    assert batch_cost(fn, lat, prices_fc) == pytest.approx(want, rel=1e-12)
    assert full_batch_cost_per_request(fn, lat, 1, prices_fc) == pytest.approx(want, rel=1e-12)


def test_gpu_batch_cost_fc_by_hand(vgg19, prices_fc):
    fn = gpu_function(vgg19, 2, prices_fc)
    lat = 12 * VGG_L0_B13  # L_avg(13, m=2) = 0.2874 s, billed as 1 whole second
    # 2/3 host vCPU, 0.5 GB host memory, 2 GB of GPU memory, for 1 s, plus the fee.
    want = FC_INV + (2 / 3 * FC_VCPU + 0.5 * FC_MEM + 2 * FC_GPU) * 1.0
    assert unit_price(fn, prices_fc) == pytest.approx(want - FC_INV, rel=1e-12)
    assert batch_cost(fn, lat, prices_fc) == pytest.approx(want, rel=1e-12)
    assert full_batch_cost_per_request(fn, lat, 13, prices_fc) == pytest.approx(want / 13)


def test_cpu_batch_cost_paper_by_hand(vgg19, prices_paper):
    fn = cpu_function(vgg19, 1, 1.6, prices_paper)
    lat = 0.2685439574212037
    # Eq. 6 with m = 0: L * c * K1 + K3 (no memory price).
    want = lat * 1.6 * K1 + K3
    assert batch_cost(fn, lat, prices_paper) == pytest.approx(want, rel=1e-12)


def test_gpu_batch_cost_paper_by_hand(vgg19, prices_paper):
    fn = gpu_function(vgg19, 2, prices_paper)
    lat = 12 * VGG_L0_B13
    # Eq. 6 with c = 0, exact duration: L * m * K2 + K3 (no host vCPU or memory).
    want = lat * 2 * K2 + K3
    assert batch_cost(fn, lat, prices_paper) == pytest.approx(want, rel=1e-12)
    assert full_batch_cost_per_request(fn, lat, 13, prices_paper) == pytest.approx(want / 13)


def test_paper_prices_make_gpu_cost_independent_of_memory(vgg19, prices_paper, prices_fc):
    """The degenerate Eq. 6 variant: (M/m) L0 * m * K2 = M * K2 * L0 for every m."""
    lm = LatencyModel(vgg19.cpu, vgg19.gpu)
    costs = {}
    for m in (2, 6):
        fn = gpu_function(vgg19, m, prices_paper)
        costs[m] = batch_cost(fn, lm.avg(fn, 13), prices_paper)
    want = 24 * K2 * VGG_L0_B13 + K3
    assert costs[2] == pytest.approx(want, rel=1e-12)
    assert costs[6] == pytest.approx(want, rel=1e-12)
    # Under fc (whole seconds, host billed) the memory share does change the cost.
    fc = [batch_cost(gpu_function(vgg19, m, prices_fc), 0.2, prices_fc) for m in (2, 6)]
    assert fc[1] > fc[0]


def test_batch_size_pmf_truncated_poisson():
    lam = 8.0 * 0.5
    pmf = batch_size_pmf(8.0, 0.5, 4)
    # N = 1 + min(Poisson(R T), b - 1): three Poisson masses, then the tail.
    assert pmf[:3] == pytest.approx(poisson.pmf([0, 1, 2], lam))
    assert pmf[3] == pytest.approx(1 - poisson.cdf(2, lam))
    assert pmf.sum() == pytest.approx(1.0)
    assert np.array_equal(batch_size_pmf(8.0, 0.5, 1), [1.0])
    assert expected_batch_size(8.0, 0.5, 4) == pytest.approx(float(pmf @ [1, 2, 3, 4]))
    assert expected_batch_size(8.0, 0.0, 4) == pytest.approx(1.0)


def test_expected_cost_per_request_renewal_reward(vgg19, prices_fc):
    fn = gpu_function(vgg19, 2, prices_fc)
    lm = LatencyModel(vgg19.cpu, vgg19.gpu)
    avgs = np.array([lm.avg(fn, n) for n in range(1, 5)])  # all < 1 s: each batch bills 1 s
    pmf = batch_size_pmf(6.0, 0.3, 4)
    per_batch = batch_cost(fn, avgs[0], prices_fc)
    want = per_batch / float(pmf @ [1, 2, 3, 4])
    assert expected_cost_per_request(fn, avgs, 6.0, 0.3, prices_fc) == pytest.approx(want)
    # Partial batches make requests dearer than the full-batch estimate.
    assert want > full_batch_cost_per_request(fn, avgs[-1], 4, prices_fc)
