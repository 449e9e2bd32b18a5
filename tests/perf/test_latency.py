"""Latency models against hand computations from the profiled parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchwise.perf.functions import Function, cpu_function, gpu_function
from batchwise.perf.latency import LatencyModel, cpu_avg, cpu_max, gpu_avg, gpu_full, gpu_max

# VGG19, from config/data/harmonybatch_models.json.
VGG_AVG_B1 = (1.8260695578676214, 0.5283726420022545, 0.18015427168547402)
VGG_MAX_B1 = (2.8046821487917626, 0.4861966854235096, 0.2486015254149421)
VGG_XI1, VGG_XI2 = 0.001679844365532822, 0.002113091944793135
BERT_XI1, BERT_XI2 = 0.0010292705272600062, 0.0015764113037945399
TAU = 0.002
M_MAX = 24


def test_cpu_exponential_model_vgg19_b1_at_1_6_vcpu(vgg19):
    # L = alpha * exp(-c / beta) + gamma, own triple for avg and max.
    a, b, g = VGG_AVG_B1
    want_avg = a * math.exp(-1.6 / b) + g  # 1.82607 * e^(-3.0282) + 0.18015
    a, b, g = VGG_MAX_B1
    want_max = a * math.exp(-1.6 / b) + g  # 2.80468 * e^(-3.2908) + 0.24860
    assert want_avg == pytest.approx(0.2685439574, abs=1e-9)
    assert want_max == pytest.approx(0.3529980349, abs=1e-9)
    assert float(cpu_avg(vgg19.cpu, 1, 1.6)) == pytest.approx(want_avg, rel=1e-12)
    assert float(cpu_max(vgg19.cpu, 1, 1.6)) == pytest.approx(want_max, rel=1e-12)


def test_cpu_latency_falls_with_vcpu_and_rises_with_batch(vgg19):
    c = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    for b in range(1, vgg19.cpu.max_batch + 1):
        assert np.all(np.diff(cpu_avg(vgg19.cpu, b, c)) < 0)
        assert np.all(cpu_max(vgg19.cpu, b, c) > cpu_avg(vgg19.cpu, b, c))
    assert cpu_avg(vgg19.cpu, 2, 1.0) > cpu_avg(vgg19.cpu, 1, 1.0)


def test_gpu_full_gpu_latency_is_linear_in_batch(vgg19):
    assert float(gpu_full(vgg19.gpu, 13)) == pytest.approx(VGG_XI1 * 13 + VGG_XI2, rel=1e-12)


def test_gpu_avg_and_max_vgg19_b13_m2(vgg19):
    l0 = VGG_XI1 * 13 + VGG_XI2  # 0.0239511 s at full GPU
    want_avg = (M_MAX / 2) * l0  # time slicing: 12 * L0 = 0.287413 s
    slices = math.ceil(l0 / (2 * TAU))  # 0.02395 / 0.004 = 5.99 -> 6 slices
    assert slices == 6
    want_max = (slices * (M_MAX - 2) * TAU + l0) * 1.2  # (6*22*0.002 + L0) * 1.2 overhead
    assert want_max == pytest.approx(0.3455412824, abs=1e-9)
    vcpu = 2 / 3
    assert float(gpu_avg(vgg19.gpu, 13, 2, vcpu)) == pytest.approx(want_avg, rel=1e-12)
    assert float(gpu_max(vgg19.gpu, 13, 2, vcpu)) == pytest.approx(want_max, rel=1e-12)


def test_gpu_max_has_no_overhead_on_the_whole_gpu(vgg19):
    l0 = VGG_XI1 * 13 + VGG_XI2
    # m = M_max: no other tenant, so no waiting slices and no 1.2 factor.
    assert float(gpu_max(vgg19.gpu, 13, 24, 8.0)) == pytest.approx(l0, rel=1e-12)
    assert float(gpu_avg(vgg19.gpu, 13, 24, 8.0)) == pytest.approx(l0, rel=1e-12)
    # m = 23 still pays the overhead: ceil(L0 / (23 tau)) = 1 slice of 1 * tau wait.
    want = (1 * (M_MAX - 23) * TAU + l0) * 1.2
    assert float(gpu_max(vgg19.gpu, 13, 23, 23 / 3)) == pytest.approx(want, rel=1e-12)


def test_bert_host_share_is_divided_by_min_vcpu_1(bert):
    l0 = BERT_XI1 * 8 + BERT_XI2  # Bert b=8 at full GPU
    # 43% of L0 is time-sliced GPU work, 57% is host work on min(vCPU, 1) cores.
    want_m2 = (M_MAX / 2) * 0.43 * l0 + 0.57 * l0 / min(2 / 3, 1)
    want_m6 = (M_MAX / 6) * 0.43 * l0 + 0.57 * l0 / min(6 / 3, 1)
    assert float(gpu_avg(bert.gpu, 8, 2, 2 / 3)) == pytest.approx(want_m2, rel=1e-12)
    assert float(gpu_avg(bert.gpu, 8, 6, 2.0)) == pytest.approx(want_m6, rel=1e-12)
    assert want_m2 == pytest.approx(0.0590106118, abs=1e-9)
    dev = 0.43 * l0
    want_max = (math.ceil(dev / (2 * TAU)) * (M_MAX - 2) * TAU + dev) * 1.2 + 0.57 * l0 / (2 / 3)
    assert float(gpu_max(bert.gpu, 8, 2, 2 / 3)) == pytest.approx(want_max, rel=1e-12)


def test_latency_model_dispatches_on_function_kind(vgg19, prices_fc):
    lm = LatencyModel(vgg19.cpu, vgg19.gpu)
    cpu = cpu_function(vgg19, 1, 1.6, prices_fc)
    gpu = gpu_function(vgg19, 2, prices_fc)
    assert cpu is not None and gpu is not None
    assert lm.avg(cpu, 1) == pytest.approx(float(cpu_avg(vgg19.cpu, 1, 1.6)), rel=1e-12)
    assert lm.max(gpu, 13) == pytest.approx(float(gpu_max(vgg19.gpu, 13, 2, 2 / 3)), rel=1e-12)
    # The vCPU of a GPU function only matters through the host share (0 for VGG19).
    assert lm.avg(Function("gpu", 0.1, 0.5, 2), 13) == pytest.approx(lm.avg(gpu, 13), rel=1e-12)


def test_gpu_latency_is_vectorised_over_memory(vgg19):
    m = np.arange(2, 25)
    avg = gpu_avg(vgg19.gpu, 4, m, m / 3)
    mx = gpu_max(vgg19.gpu, 4, m, m / 3)
    assert avg.shape == mx.shape == m.shape
    assert np.all(np.diff(avg) < 0)
    assert np.all(mx >= avg - 1e-15)
