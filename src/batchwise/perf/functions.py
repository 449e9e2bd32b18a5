"""Function configurations and the platform's resource rules (memory floors, ratios).

A *function* is one serverless size: ``c`` vCPUs (CPU), ``m`` GB of a GPU
(GPU, time-sliced, with ``m * gpu_vcpu_per_gb`` host vCPUs), or a share ``s`` of a
GPU's SMs with ``m`` GB of its memory (GPU-SM, spatially shared as under MPS). Host
memory follows from the model's memory floor and the platform's memory:vCPU ratio; a
size outside that ratio is invalid (``None``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from batchwise.config.prices import PriceBook
from batchwise.config.profiles import CpuProfile, ModelProfile

Kind = Literal["cpu", "gpu", "gpu-sm"]


@dataclass(frozen=True, slots=True)
class Function:
    """One function size. Invariants: ``gpu_memory_gb == 0`` iff ``kind == 'cpu'``;
    ``0 < sm_share <= sm_limit <= 1`` iff ``kind == 'gpu-sm'`` (both 0 otherwise)."""

    kind: Kind
    vcpu: float  # vCPUs billed and used (GPU: m * gpu_vcpu_per_gb)
    memory_gb: float  # host memory billed (GB), a multiple of the rounding step
    gpu_memory_gb: int = 0  # GPU memory share m (GB); 0 on CPU functions
    sm_share: float = 0.0  # guaranteed share of the GPU's SMs (gpu-sm only)
    sm_limit: float = 0.0  # share it may burst to while the GPU has room (gpu-sm only)

    def describe(self) -> str:
        from batchwise.perf.kinds import kind_of  # the kinds build on this module

        return kind_of(self.kind).describe(self)


def round_up_mb(mb: float, step_mb: int) -> int:
    """Round a memory size up to the platform's step (the authors truncate to int MB first)."""
    mb_int = int(mb)
    return -(-mb_int // step_mb) * step_mb


def cpu_memory_floor_gb(profile: ModelProfile, batch: int, prices: PriceBook) -> float:
    """Memory the model needs for a CPU batch, rounded up to the platform step (GB)."""
    assert profile.cpu is not None
    mb = profile.cpu.memory_per_item_mb * batch + profile.cpu.memory_base_mb
    return round_up_mb(mb, prices.memory_rounding_mb) / 1024


def min_vcpu_for_memory(profile: ModelProfile, batch: int, prices: PriceBook) -> float:
    """Smallest vCPU count whose memory ratio admits the model's memory floor."""
    return cpu_memory_floor_gb(profile, batch, prices) / prices.memory_per_vcpu_max_gb


def cpu_function(
    profile: ModelProfile, batch: int, vcpu: float, prices: PriceBook
) -> Function | None:
    """The CPU function of ``vcpu`` vCPUs for this batch, or None if memory rules forbid it."""
    floor_gb = cpu_memory_floor_gb(profile, batch, prices)
    if floor_gb > prices.memory_per_vcpu_max_gb * vcpu + 1e-9:
        return None
    mem_gb = max(floor_gb, prices.memory_per_vcpu_min_gb * vcpu)
    mem_gb = round_up_mb(mem_gb * 1024, prices.memory_rounding_mb) / 1024
    return Function("cpu", round(vcpu, 4), mem_gb, 0)


def gpu_function(profile: ModelProfile, gpu_memory_gb: int, prices: PriceBook) -> Function | None:
    """The GPU function with ``gpu_memory_gb`` GB, or None if its host memory does not fit."""
    assert profile.gpu is not None
    vcpu = gpu_memory_gb * prices.gpu_vcpu_per_gb
    mem_gb = round_up_mb(profile.gpu.host_memory_mb, prices.memory_rounding_mb) / 1024
    if mem_gb > prices.memory_per_vcpu_max_gb * vcpu + 1e-9:
        return None
    return Function("gpu", vcpu, mem_gb, gpu_memory_gb)


def cpu_grid(prices: PriceBook, cpu: CpuProfile | None = None) -> list[float]:
    """Every CPU size the platform sells, in vCPUs (within ``cpu.vcpu_range`` if it has one)."""
    n = math.floor((prices.vcpu_max - prices.vcpu_min) / prices.vcpu_step + 1e-9)
    sizes = [round(prices.vcpu_min + i * prices.vcpu_step, 4) for i in range(n + 1)]
    if cpu is not None and cpu.vcpu_range is not None:
        lo, hi = cpu.vcpu_range
        sizes = [c for c in sizes if lo - 1e-9 <= c <= hi + 1e-9]
    return sizes


def gpu_grid(profile: ModelProfile, prices: PriceBook) -> list[int]:
    """Every GPU memory size (GB) the platform sells that fits on the profiled GPU."""
    assert profile.gpu is not None
    top = min(prices.gpu_memory_gb_max, profile.gpu.total_memory_gb)
    return list(range(prices.gpu_memory_gb_min, top + 1))


def function_from_spec(spec: object) -> Function:
    """Build a :class:`Function` from a plan's ``FunctionSpec`` (duck-typed, avoids a cycle)."""
    from batchwise.perf.kinds import kind_of

    return kind_of(spec.kind).from_spec(spec)  # type: ignore[attr-defined]
