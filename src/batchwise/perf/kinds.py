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
from batchwise.perf.latency import (
    cpu_avg,
    cpu_max,
    gpu_avg,
    gpu_max,
    gpu_sm_avg,
    gpu_sm_max,
    measured_latency,
)

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
    device: ClassVar[str]  # "cpu" or "gpu": the hardware an instance needs

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
    """``c`` vCPUs on the price book's grid; latency from the profile's measured allotments
    where it keeps them (thread-aware), else its fit α·e^(−c/β)+γ per batch size."""

    name = "cpu"
    device = "cpu"

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
        m = measured_latency(part, fn.vcpu, batch, "avg_s")
        return float(cpu_avg(part, batch, fn.vcpu) if m is None else m)

    def avg_upto(self, part: Any, fn: Function, batch: int) -> np.ndarray:
        m = measured_latency(part, fn.vcpu, np.arange(1, batch + 1), "avg_s")
        if m is not None:
            return m
        p = np.asarray(part.avg[:batch], dtype=float)
        return p[:, 0] * np.exp(-fn.vcpu / p[:, 1]) + p[:, 2]

    def max(self, part: Any, fn: Function, batch: int) -> float:
        # Fitted separately, the "max" curve can dip under the "avg" one between
        # measured sizes; a maximum below the mean is never meant.
        m = measured_latency(part, fn.vcpu, batch, "max_s")
        top = cpu_max(part, batch, fn.vcpu) if m is None else m
        return float(max(top, self.avg(part, fn, batch)))

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
    device = "gpu"

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


class GpuSmKind(FunctionKind):
    """A share ``s`` of a GPU's SMs (spatially shared, as under MPS) with the memory a batch
    needs; it may burst to ``sm_limit`` while the GPU has room, which is neither billed
    nor planned on (latency and cost are at the guaranteed share).

    Why a kind of its own: a memory slice buys compute in proportion to memory (m of M
    GB runs m/M of the time), so a model that needs much memory but few SMs, or a tight
    SLO that time slicing's waits break, pays for what it does not use. Sold only by
    price books that set ``gpu_sm_per_s``; shares are multiples of ``gpu_sm_step``.
    """

    name = "gpu-sm"
    device = "gpu"

    def profile_part(self, profile: ModelProfile) -> Any | None:
        return profile.gpu

    @staticmethod
    def shares(prices: PriceBook) -> list[float]:
        n = max(1, int(1.0 / prices.gpu_sm_step + 1e-9))
        return [round(min(1.0, i * prices.gpu_sm_step), 4) for i in range(1, n + 1)]

    @staticmethod
    def limit(share: float, prices: PriceBook) -> float:
        return round(min(1.0, share * prices.gpu_sm_limit_factor), 4)

    def _memory(self, profile: ModelProfile, batch: int, prices: PriceBook) -> int | None:
        """The least GPU memory the book sells that holds the batch (more buys nothing)."""
        gpu = profile.gpu
        assert gpu is not None
        m = max(prices.gpu_memory_gb_min, gpu.min_memory_gb(batch))
        return m if m <= min(prices.gpu_memory_gb_max, gpu.total_memory_gb) else None

    def _function(self, profile: ModelProfile, m: int, share: float, limit: float,
                  prices: PriceBook) -> Function | None:  # fmt: skip
        host = gpu_function(profile, m, prices)
        if host is None:
            return None
        return Function("gpu-sm", host.vcpu, host.memory_gb, m, share, limit)

    def configs(self, profile: ModelProfile, prices: PriceBook) -> Iterator[tuple[Function, int]]:
        gpu = profile.gpu
        if gpu is None or prices.gpu_sm_per_s is None:
            return
        for b in range(1, gpu.max_batch + 1):
            m = self._memory(profile, b, prices)
            if m is None:
                continue
            for s in self.shares(prices):
                fn = self._function(profile, m, s, self.limit(s, prices), prices)
                if fn is not None:
                    yield fn, b

    def config_count(self, profile: ModelProfile, prices: PriceBook) -> int:
        gpu = profile.gpu
        if gpu is None or prices.gpu_sm_per_s is None:
            return 0
        return gpu.max_batch * len(self.shares(prices))

    def avg(self, part: Any, fn: Function, batch: int) -> float:
        return float(gpu_sm_avg(part, batch, fn.sm_share, fn.vcpu))

    def avg_upto(self, part: Any, fn: Function, batch: int) -> np.ndarray:
        return gpu_sm_avg(part, np.arange(1, batch + 1), fn.sm_share, fn.vcpu)

    def max(self, part: Any, fn: Function, batch: int) -> float:
        return float(gpu_sm_max(part, batch, fn.sm_share, fn.vcpu))

    def unit_price(self, fn: Function, prices: PriceBook) -> float:
        assert prices.gpu_sm_per_s is not None
        gpu = fn.sm_share * prices.gpu_sm_per_s + fn.gpu_memory_gb * prices.gpu_sm_memory_per_gb_s
        if not prices.gpu_bills_host:
            return gpu
        return fn.vcpu * prices.vcpu_per_s + fn.memory_gb * prices.memory_per_gb_s + gpu

    def granularity_s(self, prices: PriceBook) -> float:
        return prices.gpu_billing_granularity_s

    def size(self, fn: Function) -> float:
        return fn.sm_share

    def describe(self, fn: Function) -> str:
        return f"GPU {fn.sm_share:.0%} SM (limit {fn.sm_limit:.0%}), {fn.gpu_memory_gb} GB"

    def spec_fields(self, fn: Function) -> dict[str, Any]:
        return {"kind": "gpu-sm", "vcpu": round(fn.vcpu, 4), "memory_gb": fn.memory_gb,
                "gpu_memory_gb": fn.gpu_memory_gb, "sm_share": fn.sm_share,
                "sm_limit": fn.sm_limit}  # fmt: skip

    def from_spec(self, spec: Any) -> Function:
        return Function("gpu-sm", spec.vcpu, spec.memory_gb, int(spec.gpu_memory_gb or 0),
                        float(spec.sm_share or 0.0), float(spec.sm_limit or 0.0))  # fmt: skip

    def check(self, spec: Any, batch: int, profile: ModelProfile, prices: PriceBook) -> Function:
        gpu = profile.gpu
        if gpu is None:
            raise KindError(("function", "kind"), f"model {profile.name!r} has no GPU profile")
        if prices.gpu_sm_per_s is None:
            raise KindError(("function", "kind"), f"price book {prices.name!r} sells no "
                            "SM-share GPU functions (it sets no gpu_sm_per_s)")  # fmt: skip
        if batch > gpu.max_batch:
            raise KindError(("batch_size",), f"{batch} is above the largest GPU batch of "
                            f"{profile.name} ({gpu.max_batch})")  # fmt: skip
        share, limit = float(spec.sm_share), float(spec.sm_limit)
        if not any(abs(share - s) <= SIZE_EPS for s in self.shares(prices)):
            raise KindError(("function", "sm_share"), f"{share:g} is not a share price book "
                            f"{prices.name!r} sells (multiples of {prices.gpu_sm_step:g} up "
                            "to 1)")  # fmt: skip
        if limit > self.limit(share, prices) + SIZE_EPS:
            raise KindError(("function", "sm_limit"), f"{limit:g} is above the "
                            f"{self.limit(share, prices):g} a share of {share:g} may burst to "
                            f"(gpu_sm_limit_factor {prices.gpu_sm_limit_factor:g})")  # fmt: skip
        m = int(spec.gpu_memory_gb or 0)
        need, top = gpu.min_memory_gb(batch), min(prices.gpu_memory_gb_max, gpu.total_memory_gb)
        if not max(need, prices.gpu_memory_gb_min) <= m <= top:
            raise KindError(("function", "gpu_memory_gb"), f"{m} GB is outside "
                            f"{max(need, prices.gpu_memory_gb_min)}..{top} GB (a batch of "
                            f"{batch} needs {need} GB; price book {prices.name!r})")  # fmt: skip
        fn = self._function(profile, m, share, limit, prices)
        if fn is None:
            raise KindError(("function", "gpu_memory_gb"), f"{m} GB leaves too little host "
                            "memory")  # fmt: skip
        return fn

    def empty_reason(self, prices: PriceBook) -> str:
        if prices.gpu_sm_per_s is None:
            return f"price book {prices.name!r} sells no SM-share GPU functions"
        return "GPU host memory or memory_steps beyond what the GPU sizes hold"


KINDS: dict[str, FunctionKind] = {k.name: k for k in (CpuKind(), GpuKind(), GpuSmKind())}
"""Every function kind, by the name plans use."""

ALL_KINDS: tuple[str, ...] = tuple(KINDS)


def kind_of(name: str) -> FunctionKind:
    """The kind called ``name``; ValueError listing the known ones otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown function kind {name!r}; known: {', '.join(KINDS)}") from None
