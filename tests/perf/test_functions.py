"""Function sizes and the platform's resource rules: memory floors, ratios, GPU steps."""

from __future__ import annotations

import pytest

from batchwise.config.plan import FunctionSpec
from batchwise.config.profiles import GpuProfile, ModelProfile
from batchwise.perf.functions import (
    Function,
    cpu_function,
    cpu_grid,
    cpu_memory_floor_gb,
    function_from_spec,
    gpu_function,
    gpu_grid,
    min_vcpu_for_memory,
    round_up_mb,
)


def test_round_up_mb_truncates_then_rounds_to_the_step():
    assert round_up_mb(844.19, 64) == 896  # 844 -> 14 * 64
    assert round_up_mb(896.0, 64) == 896  # already a multiple
    assert round_up_mb(896.9, 64) == 896  # the authors truncate to whole MB first
    assert round_up_mb(897.0, 64) == 960
    assert round_up_mb(1, 64) == 64


def test_cpu_memory_floor_vgg19(vgg19, prices_fc):
    # a*b + b0 = 36.5714 * 1 + 807.619 = 844.19 MB -> 896 MB = 0.875 GB
    assert cpu_memory_floor_gb(vgg19, 1, prices_fc) == 896 / 1024
    # b = 4: 146.29 + 807.62 = 953.9 MB -> 960 MB
    assert cpu_memory_floor_gb(vgg19, 4, prices_fc) == 960 / 1024


def test_cpu_function_memory_is_at_least_one_gb_per_vcpu(vgg19, prices_fc):
    fn = cpu_function(vgg19, 1, 1.6, prices_fc)
    # max(0.875 GB floor, 1.6 GB) = 1638.4 MB -> 1638 -> 1664 MB (26 * 64)
    assert fn == Function("cpu", 1.6, 1664 / 1024, 0)
    # Small sizes get the model's floor: 0.5 vCPU -> max(0.875, 0.5) = 0.875 GB.
    assert cpu_function(vgg19, 1, 0.5, prices_fc) == Function("cpu", 0.5, 0.875, 0)


def test_memory_ratio_makes_tiny_cpu_functions_invalid(videomae, vgg19, prices_fc):
    # VideoMAE b=1: 1505.28 + 1945.6 = 3450.88 MB -> 3456 MB = 3.375 GB, so c >= 3.375 / 4.
    assert cpu_memory_floor_gb(videomae, 1, prices_fc) == 3456 / 1024
    assert min_vcpu_for_memory(videomae, 1, prices_fc) == pytest.approx(0.84375)
    assert cpu_function(videomae, 1, 0.05, prices_fc) is None
    assert cpu_function(videomae, 1, 0.8, prices_fc) is None
    fn = cpu_function(videomae, 1, 0.85, prices_fc)
    assert fn is not None and fn.memory_gb == 3456 / 1024
    # b=4: 4 * 1505.28 + 1945.6 = 7966.72 MB -> 8000 MB = 7.8125 GB -> c >= 1.953125.
    assert cpu_function(videomae, 4, 1.95, prices_fc) is None
    assert cpu_function(videomae, 4, 2.0, prices_fc) is not None
    # VGG19 b=1 needs 0.875 GB, so 0.2 vCPU (0.8 GB max) is invalid and 0.25 is fine.
    assert cpu_function(vgg19, 1, 0.2, prices_fc) is None
    assert cpu_function(vgg19, 1, 0.25, prices_fc) is not None


def test_gpu_memory_steps(vgg19, gpt2, videomae, bert):
    # VGG19 gpu_mem = [0]: no batch fits in 1 GB.
    assert {vgg19.gpu.min_memory_gb(b) for b in range(1, 33)} == {2}
    # GPT-2 gpu_mem = [27]: batches up to 27 fit in 1 GB, 28 needs 2 GB.
    assert gpt2.gpu.min_memory_gb(27) == 1
    assert gpt2.gpu.min_memory_gb(28) == 2
    # VideoMAE gpu_mem = [0, 4, 6, 12, 14]: entry i is the largest batch in i+1 GB.
    want = {1: 2, 4: 2, 5: 3, 6: 3, 7: 4, 12: 4, 13: 5, 14: 5, 15: 6, 32: 6}
    assert {b: videomae.gpu.min_memory_gb(b) for b in want} == want
    # Bert gpu_mem = []: 1 GB fits every batch.
    assert {bert.gpu.min_memory_gb(b) for b in range(1, 33)} == {1}


def test_gpu_function_gets_a_third_vcpu_per_gb_and_host_memory(vgg19, gpt2, prices_fc):
    fn = gpu_function(vgg19, 2, prices_fc)
    assert fn == Function("gpu", 2 / 3, 0.5, 2)  # 512 MB host memory
    assert gpu_function(gpt2, 1, prices_fc) == Function("gpu", 1 / 3, 1.0, 1)  # 1024 MB


def test_gpu_function_invalid_when_host_memory_exceeds_the_ratio(prices_fc):
    # 2048 MB of host memory on 1/3 vCPU (at most 4/3 GB) is not sold.
    gpu = GpuProfile(per_item_s=0.001, base_s=0.002, host_memory_mb=2048)
    prof = ModelProfile(name="big-host", gpu=gpu)
    assert gpu_function(prof, 1, prices_fc) is None
    assert gpu_function(prof, 2, prices_fc) == Function("gpu", 2 / 3, 2.0, 2)


def test_grids(vgg19, prices_fc):
    grid = cpu_grid(prices_fc)
    assert grid[0] == 0.05 and grid[-1] == 16.0 and len(grid) == 320
    assert 1.55 in grid and 1.6 in grid
    assert gpu_grid(vgg19, prices_fc) == list(range(1, 25))


def test_function_from_spec_round_trips():
    spec = FunctionSpec(kind="gpu", vcpu=2 / 3, memory_gb=0.5, gpu_memory_gb=2)
    assert function_from_spec(spec) == Function("gpu", 2 / 3, 0.5, 2)
    spec = FunctionSpec(kind="cpu", vcpu=1.6, memory_gb=1.625)
    fn = function_from_spec(spec)
    assert fn == Function("cpu", 1.6, 1.625, 0)
    assert fn.describe() == "CPU 1.60 vCPU"
    assert Function("gpu", 2 / 3, 0.5, 2).describe() == "GPU 2 GB"
