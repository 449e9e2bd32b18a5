"""Service times calibrated from measured batches."""

from __future__ import annotations

import pytest

from batchwise.config.profiles import ModelProfile
from batchwise.perf.functions import Function
from batchwise.serving.service_model import ServiceModel


@pytest.fixture
def model() -> ServiceModel:
    prof = ModelProfile(name="m", cpu={"avg": [[0, 1, 0.01 * b] for b in range(1, 9)],
                                       "max": [[0, 1, 0.015 * b] for b in range(1, 9)],
                                       "memory_base_mb": 10})  # fmt: skip
    return ServiceModel(prof, Function("cpu", 1.0, 1.0), 8)


def test_the_first_batch_sets_the_level_and_later_ones_move_it_slowly(model):
    assert model.avg(4) == pytest.approx(0.04)
    model.observe(4, 0.08)  # twice as slow as profiled
    assert model.factor == pytest.approx(2.0) and model.avg(2) == pytest.approx(0.04)
    model.observe(4, 0.04)
    assert 1.0 < model.factor < 2.0


def test_the_tail_is_learned_from_recent_ratios(model):
    for i in range(64):
        model.observe(4, 0.04 if i % 10 else 0.12)  # every tenth batch 3x slower
    assert model.worst(4) >= 0.04 * 2.5


def test_batches_beyond_the_profile_use_its_largest(model):
    assert model.avg(100) == model.avg(8)


def test_a_resized_group_keeps_its_calibration_and_knows_its_speedup():
    # L(b, c) = 0.04 b exp(-c / 0.5) + 0.001 b: faster with more vCPU
    prof = ModelProfile(name="m", cpu={"avg": [[0.04 * b, 0.5, 0.001 * b] for b in range(1, 5)],
                                       "max": [[0.05 * b, 0.5, 0.001 * b] for b in range(1, 5)],
                                       "memory_base_mb": 10})  # fmt: skip
    m = ServiceModel(prof, Function("cpu", 0.5, 1.0), 4)
    m.observe(4, 2 * m.avg(4))  # today twice as slow as profiled
    slow = m.avg(4)
    m.resize(Function("cpu", 1.0, 1.0))
    assert m.factor == pytest.approx(2.0)
    assert m.speedup(4) == pytest.approx(slow / m.avg(4)) and m.speedup(4) > 1.5
    m.resize(Function("cpu", 0.5, 1.0))
    assert m.speedup(4) == pytest.approx(1.0) and m.avg(4) == pytest.approx(slow)


def test_a_model_flat_in_vcpus_gains_nothing_from_a_surge(model):
    model.resize(Function("cpu", 2.0, 1.0))
    assert model.speedup(4) == pytest.approx(1.0)


def test_the_gain_of_growing_an_instance_is_the_profiles_speedup_at_that_size():
    prof = ModelProfile(name="m", cpu={"avg": [[0.04 * b, 0.5, 0.001 * b] for b in range(1, 5)],
                                       "max": [[0.05 * b, 0.5, 0.001 * b] for b in range(1, 5)],
                                       "memory_base_mb": 10})  # fmt: skip
    m = ServiceModel(prof, Function("cpu", 0.5, 1.0), 4)
    assert m.gain(0.5, 4) == pytest.approx(1.0)
    g = m.gain(1.0, 4)
    m.resize(Function("cpu", 1.0, 1.0))
    assert g == pytest.approx(m.speedup(4)) and g > 1.5  # the same figure, before growing
    assert m.gain(1.0, 4) == pytest.approx(g)  # against the plan's size, whatever the current


def test_a_model_flat_in_vcpus_gains_nothing_from_growing(model):
    assert model.gain(2.0, 4) == pytest.approx(1.0)
