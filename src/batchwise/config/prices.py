"""Price books: what a serverless platform charges and which function sizes it sells.

Two built-in variants (see README, "Cost models"):

* ``alibaba-fc-2023`` (variant ``fc``, the default): what Alibaba Function Compute
  bills and what the HarmonyBatch authors' code models — vCPU, memory and GPU
  memory for the billed duration plus a per-invocation fee; GPU functions are
  billed in whole seconds. Units are the authors' (CNY, inferred).
* ``local``: this machine, sizes 0.1 vCPU up to its cores (see :func:`local_price_book`).
* ``paper-eq6`` (variant ``paper``): the paper's Eq. 6 as printed — only vCPU or
  GPU memory, exact durations. Under it a GPU function's cost does not depend on
  its memory share, so one large GPU group nearly always wins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from batchwise.config.base import StrictModel
from batchwise.config.limits import MAX_GPU_MEMORY_GB, MAX_GRID_SIZES, MAX_VCPU
from batchwise.config.loader import load_model
from batchwise.errors import ConfigError

DEFAULT_PRICE_BOOK = "alibaba-fc-2023"


class PriceBook(StrictModel):
    """Prices (per second of billed duration unless noted) and the platform's size limits."""

    name: str = Field(min_length=1, max_length=200)
    variant: Literal["fc", "paper"] = Field("fc", description="cost model family (label only)")
    currency: str = Field("CNY", description="currency of every price in this book")
    vcpu_per_s: float = Field(ge=0, description="price per vCPU-second")
    memory_per_gb_s: float = Field(0.0, ge=0, description="price per GB-second of host memory")
    gpu_memory_per_gb_s: float = Field(ge=0, description="price per GB-second of GPU memory")
    invocation: float = Field(0.0, ge=0, description="price per invocation (one batch)")
    cpu_billing_granularity_s: float = Field(
        0.0, ge=0, description="CPU durations are rounded up to this (0: exact)"
    )
    gpu_billing_granularity_s: float = Field(
        1.0, ge=0, description="GPU durations are rounded up to this (0: exact)"
    )
    gpu_bills_host: bool = Field(
        True, description="a GPU function also pays for its host vCPU and memory"
    )
    # SM-share GPU functions (kind gpu-sm): sold only where gpu_sm_per_s is set.
    gpu_sm_per_s: float | None = Field(
        None, ge=0, description="price per second of a whole GPU's SMs (share 1.0); "
        "unset: no SM-share GPU functions are sold"
    )  # fmt: skip
    gpu_sm_memory_per_gb_s: float = Field(
        0.0, ge=0, description="price per GB-second of GPU memory held by an SM-share function"
    )
    gpu_sm_step: float = Field(
        0.1, gt=0, le=1, description="SM shares sold: multiples of this up to 1 (the smallest too)"
    )
    gpu_sm_limit_factor: float = Field(
        2.0, ge=1, le=100, description="an SM-share function may burst to this × its share "
        "(at most the whole GPU); bursts are not billed and not planned on"
    )  # fmt: skip
    # Platform limits (Alibaba Function Compute, Nov 2023).
    vcpu_min: float = Field(0.05, gt=0, le=MAX_VCPU, description="smallest CPU function (vCPU)")
    vcpu_max: float = Field(16.0, gt=0, le=MAX_VCPU, description="largest CPU function (vCPU)")
    vcpu_step: float = Field(0.05, gt=0, description="CPU function size step (vCPU)")
    gpu_memory_gb_min: int = Field(
        1, ge=1, le=MAX_GPU_MEMORY_GB, description="smallest GPU function (GB)"
    )
    gpu_memory_gb_max: int = Field(
        24, ge=1, le=MAX_GPU_MEMORY_GB, description="largest GPU function (GB)"
    )
    gpu_vcpu_per_gb: float = Field(1 / 3, gt=0, description="host vCPU a GPU function gets per GB")
    memory_rounding_mb: int = Field(
        64, ge=1, le=1024 * 1024, description="memory is sold in steps of this (MB)"
    )
    memory_per_vcpu_min_gb: float = Field(1.0, ge=0, description="memory:vCPU lower bound (GB)")
    memory_per_vcpu_max_gb: float = Field(4.0, gt=0, description="memory:vCPU upper bound (GB)")

    @model_validator(mode="after")
    def _ranges(self) -> PriceBook:
        if self.vcpu_min > self.vcpu_max:
            raise ValueError("vcpu_min must not exceed vcpu_max")
        if self.gpu_memory_gb_min > self.gpu_memory_gb_max:
            raise ValueError("gpu_memory_gb_min must not exceed gpu_memory_gb_max")
        if self.memory_per_vcpu_min_gb > self.memory_per_vcpu_max_gb:
            raise ValueError("memory_per_vcpu_min_gb must not exceed memory_per_vcpu_max_gb")
        return self

    @field_validator("vcpu_step")
    @classmethod
    def _grid_size(cls, step: float, info: ValidationInfo) -> float:
        low, high = info.data.get("vcpu_min"), info.data.get("vcpu_max")
        if low is not None and high is not None:
            sizes = (high - low) / step + 1
            if sizes > MAX_GRID_SIZES:
                raise ValueError(
                    f"vcpu_min..vcpu_max in steps of {step:g} makes {sizes:,.0f} CPU sizes; "
                    f"the limit is {MAX_GRID_SIZES:,} (use a larger vcpu_step)"
                )
        return step


def local_price_book(cores: int | None = None) -> PriceBook:
    """This machine sold by the vCPU: sizes 0.1..its cores, on-demand cloud prices.

    Prices are those of a general-purpose cloud VM (USD 0.0425 per vCPU-hour, 0.0053 per
    GB-hour, 2026): what running here displaces. Change them with your own price book
    file (fields: ``batchwise schema prices``).
    No GPU is sold (a GPU profile plans nothing here).
    """
    n = cores or os.cpu_count() or 1
    return PriceBook(
        name="local",
        variant="fc",
        currency="USD",
        vcpu_per_s=0.0425 / 3600,
        memory_per_gb_s=0.0053 / 3600,
        gpu_memory_per_gb_s=0.0,
        invocation=0.0,
        cpu_billing_granularity_s=0.0,
        gpu_billing_granularity_s=0.0,
        vcpu_min=0.1,
        vcpu_max=float(n),
        vcpu_step=0.1,
        gpu_memory_gb_min=1,
        gpu_memory_gb_max=1,
        memory_per_vcpu_min_gb=0.0,
        memory_per_vcpu_max_gb=64.0,
    )


BUILTIN_PRICE_BOOKS: dict[str, PriceBook] = {
    "local": local_price_book(),
    "alibaba-fc-2023": PriceBook(
        name="alibaba-fc-2023",
        variant="fc",
        currency="CNY",
        vcpu_per_s=0.00009,
        memory_per_gb_s=0.000009,
        gpu_memory_per_gb_s=0.00011,
        invocation=0.009 / 10_000,
        gpu_billing_granularity_s=1.0,
        gpu_bills_host=True,
    ),
    "alibaba-fc-2023-sm": PriceBook(
        name="alibaba-fc-2023-sm",
        variant="fc",
        currency="CNY",
        vcpu_per_s=0.00009,
        memory_per_gb_s=0.000009,
        gpu_memory_per_gb_s=0.00011,
        invocation=0.009 / 10_000,
        gpu_billing_granularity_s=1.0,
        gpu_bills_host=True,
        # The whole 24 GB GPU costs what it costs as memory slices (24 × 0.00011 per s),
        # split half for its SMs and half for its memory.
        gpu_sm_per_s=24 * 0.00011 / 2,
        gpu_sm_memory_per_gb_s=0.00011 / 2,
    ),
    "paper-eq6": PriceBook(
        name="paper-eq6",
        variant="paper",
        currency="USD",
        vcpu_per_s=1.3e-5,
        memory_per_gb_s=0.0,
        gpu_memory_per_gb_s=1.5e-5,
        invocation=1.3e-7,
        gpu_billing_granularity_s=0.0,
        gpu_bills_host=False,
    ),
}


def load_prices(ref: str | Path | None) -> PriceBook:
    """A built-in price book by name (None: the default) or a YAML/JSON file."""
    if ref is None:
        return BUILTIN_PRICE_BOOKS[DEFAULT_PRICE_BOOK]
    if str(ref) in BUILTIN_PRICE_BOOKS:
        return BUILTIN_PRICE_BOOKS[str(ref)]
    p = Path(ref)
    if not p.exists():
        raise ConfigError(
            f"prices: {ref!r} is neither a built-in price book "
            f"({', '.join(BUILTIN_PRICE_BOOKS)}) nor an existing file"
        )
    return load_model(PriceBook, p)
