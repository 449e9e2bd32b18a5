"""Function kinds: everything that differs between a CPU and a GPU function, in one place.

Why a registry: a function's kind used to be switched on in about eight places (plan
specs, latency, price, the configuration grid, plan verification, descriptions, the
planners' tables). Each kind is now one :class:`FunctionKind` entry in :data:`KINDS`
— how its sizes are enumerated, priced, timed, described, written to a plan and
checked when a plan is read back — so a new kind (e.g. an SM-share GPU function) is
one new class, not eight edits. Callers look a kind up with :func:`kind_of`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.perf.functions import (
    Function,
    cpu_function,
    cpu_grid,
    gpu_function,
    gpu_grid,
)
from batchwise.perf.latency import cpu_avg, cpu_max, gpu_avg, gpu_max

SIZE_EPS = 1e-4
"""Tolerance (vCPU, GB) when a plan's sizes are compared with a price book's (plans
store vCPUs rounded to 4 decimals)."""


class KindError(ValueError):
    """A plan's function is not one this kind can run; ``field`` is relative to the group."""

    def __init__(self, field: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.field = field


class FunctionKind(ABC):
    """One kind of function: its sizes, latency, price, description and plan form."""

    name: ClassVar[str]  # the plan's ``function.kind``

    @abstractmethod
    def profile_part(self, profile: ModelProfile) -> Any | None:
        """The part of the model's profile this kind runs on (None: not profiled)."""

    @abstractmethod
    def configs(self, profile: ModelProfile, prices: PriceBook) -> Iterator[tuple[Function, int]]:
        """Every (function, batch size) the price book sells for this model."""

    @abstractmethod
    def config_count(self, profile: ModelProfile, prices: PriceBook) -> int:
        """An upper bound on ``len(configs(...))``, cheap (refuses huge grids up front)."""

    @abstractmethod
    def avg(self, part: Any, fn: Function, batch: int) -> float:
        """L_avg of a batch of ``batch`` items."""

    @abstractmethod
    def avg_upto(self, part: Any, fn: Function, batch: int) -> np.ndarray:
        """L_avg of batches of 1..batch (entry n-1), in one vectorised step."""

    @abstractmethod
    def max(self, part: Any, fn: Function, batch: int) -> float:
        """L_max of a batch of ``batch`` items."""

    @abstractmethod
    def unit_price(self, fn: Function, prices: PriceBook) -> float:
        """Price per billed second."""

    @abstractmethod
    def granularity_s(self, prices: PriceBook) -> float:
        """Billing granularity (s; 0 means exact)."""

    @abstractmethod
    def size(self, fn: Function) -> float:
        """The size a user picks (vCPUs, GPU GB): what tables and reports index by."""

    @abstractmethod
    def describe(self, fn: Function) -> str:
        """One short human description, e.g. ``CPU 1.60 vCPU``."""

    @abstractmethod
    def spec_fields(self, fn: Function) -> dict[str, Any]:
        """The plan's ``function`` fields for ``fn`` (``kind`` included)."""

    @abstractmethod
    def from_spec(self, spec: Any) -> Function:
        """The function a plan's ``function`` names (no checks)."""

    @abstractmethod
    def check(self, spec: Any, batch: int, profile: ModelProfile, prices: PriceBook) -> Function:
        """The function the platform would run for this plan entry, or KindError why not."""

    @abstractmethod
    def empty_reason(self, prices: PriceBook) -> str:
        """Why this kind may offer no configuration for a model under ``prices``."""


class CpuKind(FunctionKind):
    """``c`` vCPUs on the price book's grid; latency α·e^(−c/β)+γ per batch size."""

    name = "cpu"

    def profile_part(self, profile: ModelProfile) -> Any | None:
        return profile.cpu

    def configs(self, profile: ModelProfile, prices: PriceBook) -> Iterator[tuple[Function, int]]:
        cpu = profile.cpu
        if cpu is None:
            return
        grid = cpu_grid(prices, cpu)
        for b in range(1, cpu.max_batch + 1):
            for c in grid:
                fn = cpu_function(profile, b, c, prices)
                if fn is not None:
                    yield fn, b

    def config_count(self, profile: ModelProfile, prices: PriceBook) -> int:
        cpu = profile.cpu
        return 0 if cpu is None else cpu.max_batch * len(cpu_grid(prices, cpu))

    def avg(self, part: Any, fn: Function, batch: int) -> float:
        return float(cpu_avg(part, batch, fn.vcpu))

    def avg_upto(self, part: Any, fn: Function, batch: int) -> np.ndarray:
        p = np.asarray(part.avg[:batch], dtype=float)
        return p[:, 0] * np.exp(-fn.vcpu / p[:, 1]) + p[:, 2]

    def max(self, part: Any, fn: Function, batch: int) -> float:
        # Fitted separately, the "max" curve can dip under the "avg" one between
        # measured sizes; a maximum below the mean is never meant.
        return float(max(cpu_max(part, batch, fn.vcpu), cpu_avg(part, batch, fn.vcpu)))

    def unit_price(self, fn: Function, prices: PriceBook) -> float:
        return fn.vcpu * prices.vcpu_per_s + fn.memory_gb * prices.memory_per_gb_s

    def granularity_s(self, prices: PriceBook) -> float:
        return prices.cpu_billing_granularity_s

    def size(self, fn: Function) -> float:
        return fn.vcpu

    def describe(self, fn: Function) -> str:
        return f"CPU {fn.vcpu:.2f} vCPU"

    def spec_fields(self, fn: Function) -> dict[str, Any]:
        return {"kind": "cpu", "vcpu": fn.vcpu, "memory_gb": fn.memory_gb}

    def from_spec(self, spec: Any) -> Function:
        return Function("cpu", spec.vcpu, spec.memory_gb, 0)

    def check(self, spec: Any, batch: int, profile: ModelProfile, prices: PriceBook) -> Function:
        cpu = profile.cpu
        if cpu is None:
            raise KindError(("function", "kind"), f"model {profile.name!r} has no CPU profile")
        if batch > cpu.max_batch:
            raise KindError(("batch_size",), f"{batch} is above the largest CPU batch profiled "
                            f"for {profile.name} ({cpu.max_batch})")  # fmt: skip
        v = spec.vcpu
        steps = (v - prices.vcpu_min) / prices.vcpu_step
        on_grid = abs(steps - round(steps)) <= 1e-4
        if not (prices.vcpu_min - SIZE_EPS <= v <= prices.vcpu_max + SIZE_EPS) or not on_grid:
            raise KindError(("function", "vcpu"), f"{v:g} vCPU is not a size price book "
                            f"{prices.name!r} sells ({prices.vcpu_min:g} to "
                            f"{prices.vcpu_max:g} in steps of {prices.vcpu_step:g})")  # fmt: skip
        fn = cpu_function(profile, batch, v, prices)
        if fn is None:
            raise KindError(("function", "vcpu"), f"{v:g} vCPU cannot hold the memory a batch "
                            f"of {batch} needs (at most {prices.memory_per_vcpu_max_gb:g} GB "
                            "per vCPU)")  # fmt: skip
        return fn

    def empty_reason(self, prices: PriceBook) -> str:
        return (f"CPU memory floor above {prices.memory_per_vcpu_max_gb:g} GB per vCPU x "
                f"{prices.vcpu_max:g} vCPU")  # fmt: skip


class GpuKind(FunctionKind):
    """``m`` GB of a GPU (time-sliced by memory share) with ``m × gpu_vcpu_per_gb`` host vCPUs."""

    name = "gpu"

    def profile_part(self, profile: ModelProfile) -> Any | None:
        return profile.gpu

    def configs(self, profile: ModelProfile, prices: PriceBook) -> Iterator[tuple[Function, int]]:
        gpu = profile.gpu
        if gpu is None:
            return
        for m in gpu_grid(profile, prices):
            fn = gpu_function(profile, m, prices)
            if fn is None:
                continue
            for b in range(1, gpu.max_batch + 1):
                if m >= gpu.min_memory_gb(b):
                    yield fn, b

    def config_count(self, profile: ModelProfile, prices: PriceBook) -> int:
        gpu = profile.gpu
        return 0 if gpu is None else gpu.max_batch * len(gpu_grid(profile, prices))

    def avg(self, part: Any, fn: Function, batch: int) -> float:
        return float(gpu_avg(part, batch, fn.gpu_memory_gb, fn.vcpu))

    def avg_upto(self, part: Any, fn: Function, batch: int) -> np.ndarray:
        return gpu_avg(part, np.arange(1, batch + 1), fn.gpu_memory_gb, fn.vcpu)

    def max(self, part: Any, fn: Function, batch: int) -> float:
        return float(gpu_max(part, batch, fn.gpu_memory_gb, fn.vcpu))

    def unit_price(self, fn: Function, prices: PriceBook) -> float:
        gpu = fn.gpu_memory_gb * prices.gpu_memory_per_gb_s
        if not prices.gpu_bills_host:
            return gpu
        return fn.vcpu * prices.vcpu_per_s + fn.memory_gb * prices.memory_per_gb_s + gpu

    def granularity_s(self, prices: PriceBook) -> float:
        return prices.gpu_billing_granularity_s

    def size(self, fn: Function) -> float:
        return fn.gpu_memory_gb

    def describe(self, fn: Function) -> str:
        return f"GPU {fn.gpu_memory_gb} GB"

    def spec_fields(self, fn: Function) -> dict[str, Any]:
        return {"kind": "gpu", "vcpu": round(fn.vcpu, 4), "memory_gb": fn.memory_gb,
                "gpu_memory_gb": fn.gpu_memory_gb}  # fmt: skip

    def from_spec(self, spec: Any) -> Function:
        return Function("gpu", spec.vcpu, spec.memory_gb, int(spec.gpu_memory_gb or 0))

    def check(self, spec: Any, batch: int, profile: ModelProfile, prices: PriceBook) -> Function:
        gpu = profile.gpu
        if gpu is None:
            raise KindError(("function", "kind"), f"model {profile.name!r} has no GPU profile")
        if batch > gpu.max_batch:
            raise KindError(("batch_size",), f"{batch} is above the largest GPU batch of "
                            f"{profile.name} ({gpu.max_batch})")  # fmt: skip
        m = spec.gpu_memory_gb or 0
        top = min(prices.gpu_memory_gb_max, gpu.total_memory_gb)
        where = ("function", "gpu_memory_gb")
        if not prices.gpu_memory_gb_min <= m <= top:
            raise KindError(where, f"{m} GB is outside {prices.gpu_memory_gb_min}..{top} GB "
                            f"(price book {prices.name!r}, a {gpu.total_memory_gb} GB "
                            "GPU)")  # fmt: skip
        need = gpu.min_memory_gb(batch)
        if m < need:
            raise KindError(where, f"a batch of {batch} needs {need} GB, not {m}")
        fn = gpu_function(profile, m, prices)
        if fn is None:
            raise KindError(where, f"{m} GB leaves too little host memory")
        return fn

    def empty_reason(self, prices: PriceBook) -> str:
        return "GPU host memory or memory_steps beyond what the GPU sizes hold"


KINDS: dict[str, FunctionKind] = {k.name: k for k in (CpuKind(), GpuKind())}
"""Every function kind, by the name plans use."""

ALL_KINDS: tuple[str, ...] = tuple(KINDS)


def kind_of(name: str) -> FunctionKind:
    """The kind called ``name``; ValueError listing the known ones otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown function kind {name!r}; known: {', '.join(KINDS)}") from None
