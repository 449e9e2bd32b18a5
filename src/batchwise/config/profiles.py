"""Model latency profiles: what a model costs in time on CPU and GPU functions.

Two file formats are accepted: the HarmonyBatch authors' ``model.json`` (read
as-is, so users can bring their profiling output) and our own documented schema
(``models: {NAME: {cpu: …, gpu: …}}``). The four HarmonyBatch models ship built in.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from batchwise.config.base import StrictModel, tuple_of
from batchwise.config.limits import MAX_BATCH, MAX_GPU_MEMORY_GB
from batchwise.config.loader import LineMap, load_document, validate
from batchwise.errors import ConfigError

BUILTIN_PROFILE_SET = "harmonybatch"
"""Name of the built-in profile set (VGG19, Bert, GPT-2, VideoMAE on an A10)."""

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
ExpTriple = tuple_of(tuple[NonNegative, Positive, NonNegative])
"""[alpha >= 0, beta > 0, gamma >= 0]: latency falls with vCPUs towards gamma."""
MAX_MEMORY_MB = 1024.0 * 1024
"""Largest memory figure (MB) a profile may state: 1 TB."""

_Strict = StrictModel  # strict, finite, closed: see config.base


class MeasuredCurve(_Strict):
    """Back-to-back batch latencies measured on one allotment: ``vcpu`` of quota run by
    ``threads`` runtime threads (a quota that covers the threads never throttles: the
    batch's work at full speed on that many threads), linearly interpolated between the
    measured batch sizes."""

    vcpu: Positive = Field(le=1024, description="the allotment's quota (vCPU)")
    threads: int = Field(ge=1, le=1024, description="runtime threads the instance ran")
    batch: list[int] = Field(min_length=1, max_length=MAX_BATCH,
                             description="measured batch sizes, increasing")  # fmt: skip
    avg_s: list[Positive] = Field(
        min_length=1, max_length=MAX_BATCH, description="mean latency per measured batch size (s)"
    )
    max_s: list[Positive] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="99th percentile per measured batch size (s)",
    )

    @model_validator(mode="after")
    def _aligned(self) -> MeasuredCurve:
        if not len(self.batch) == len(self.avg_s) == len(self.max_s):
            raise ValueError("batch, avg_s and max_s must have the same length")
        if (
            any(b <= a for a, b in zip(self.batch, self.batch[1:], strict=False))
            or self.batch[0] < 1
        ):
            raise ValueError("batch must be increasing positive sizes")
        return self

    @property
    def unthrottled(self) -> bool:
        """Whether the quota covered the threads (the batch's work at full speed)."""
        return self.vcpu >= self.threads - 1e-9


class IdlePoint(_Strict):
    """How much slower a batch of ``batch`` runs on ``threads`` runtime threads after an idle
    spell than back to back (measured by ``batchwise profile``)."""

    threads: int = Field(ge=1, le=1024, description="runtime threads of the instance")
    batch: int = Field(ge=1, le=MAX_BATCH, description="batch size")
    factor: float = Field(ge=1.0, le=10.0, description="idle batch time / back-to-back time")


class IdleSlowdown(_Strict):
    """Batches after an idle spell of at least ``after_s`` take ``factor`` × the profile's
    time (interpolated over batch sizes; the nearest measured thread count): see
    :mod:`batchwise.perf.idle`."""

    after_s: float = Field(ge=0, le=60, description="idle time from which a batch runs cold (s)")
    points: list[IdlePoint] = Field(min_length=1, max_length=4096)


class CpuProfile(_Strict):
    """CPU latency ``L(b, c) = alpha_b * exp(-c / beta_b) + gamma_b`` (seconds, c in vCPUs)."""

    avg: list[ExpTriple] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="[alpha, beta, gamma] of the average latency, one per batch 1..B",
    )
    max: list[ExpTriple] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="[alpha, beta, gamma] of the maximum latency, one per batch 1..B",
    )
    memory_per_item_mb: float = Field(
        0.0, ge=0, le=MAX_MEMORY_MB, description="a in the memory floor a*b + b0 (MB)"
    )
    memory_base_mb: float = Field(
        ge=0, le=MAX_MEMORY_MB, description="b0 in the memory floor a*b + b0 (MB)"
    )
    vcpu_range: tuple_of(tuple[Positive, Positive]) | None = Field(
        None,
        description="[lo, hi] vCPUs the fit was measured over; planners consider only "
        "sizes inside it (an exponential fit says little beyond its data)",
    )
    measured: list[MeasuredCurve] | None = Field(
        None,
        max_length=64,
        description="the allotments as measured (written by 'batchwise profile'): where "
        "present, planners and the simulator take latency from them (thread-aware, see "
        "batchwise.perf.latency) instead of the exponential fit",
    )
    idle_slowdown: IdleSlowdown | None = Field(
        None,
        description="how much slower a batch runs after the instance sat idle (measured by "
        "'batchwise profile'; absent: as fast as back to back)",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_unthrottled(cls, data: Any) -> Any:
        """Profiles written on 2026-12-02 kept only the whole-vCPU cells, as
        ``unthrottled: [{threads, …}]``: read them as measured at ``vcpu = threads``."""
        if isinstance(data, dict) and "unthrottled" in data and "measured" not in data:
            data = dict(data)
            old = data.pop("unthrottled")
            if isinstance(old, list):
                old = [{"vcpu": float(c["threads"]), **c}
                       if isinstance(c, dict) and isinstance(c.get("threads"), int)
                       and "vcpu" not in c else c for c in old]  # fmt: skip
            data["measured"] = old
        return data

    @model_validator(mode="after")
    def _same_length(self) -> CpuProfile:
        if len(self.avg) != len(self.max):
            raise ValueError(
                f"avg has {len(self.avg)} batch sizes but max has {len(self.max)}; they must match"
            )
        if self.vcpu_range is not None and self.vcpu_range[0] > self.vcpu_range[1]:
            raise ValueError("vcpu_range: lo must not exceed hi")
        for i, triple in enumerate((*self.avg, *self.max)):
            if triple[0] + triple[2] <= 0:
                raise ValueError(f"batch {i % len(self.avg) + 1}: alpha + gamma must be > 0")
        return self

    @property
    def max_batch(self) -> int:
        return len(self.avg)


class GpuProfile(_Strict):
    """GPU latency at full GPU ``L0(b) = per_item_s * b + base_s``, time-sliced by memory share."""

    per_item_s: float = Field(
        ge=0, description="xi1: seconds per extra item in a batch at full GPU"
    )
    base_s: float = Field(
        description="xi2: fixed seconds per batch at full GPU (may be < 0 if L0(1) > 0)"
    )
    slice_s: Positive = Field(0.002, description="tau: time-slice length of the GPU sharer (s)")
    total_memory_gb: int = Field(
        24, ge=1, le=MAX_GPU_MEMORY_GB, description="M_max: memory of the whole GPU (GB)"
    )
    gpu_share: float = Field(
        1.0, ge=0, le=1, description="fraction of L0 that runs on the GPU (time-sliced)"
    )
    host_share: float = Field(
        0.0, ge=0, le=1, description="fraction of L0 that is host work, divided by min(vCPU, 1)"
    )
    host_memory_mb: float = Field(
        512, gt=0, le=MAX_MEMORY_MB, description="host memory a GPU function needs (MB)"
    )
    memory_steps: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list,
        max_length=MAX_GPU_MEMORY_GB,
        description="entry i: largest batch that fits in i+1 GB; larger batches need more",
    )
    max_batch: int = Field(
        32, ge=1, le=MAX_BATCH, description="largest batch size considered on a GPU"
    )
    max_latency_overhead: float = Field(
        1.2, ge=1, description="factor on the GPU part of L_max when the function has m < M_max "
        "(gpu-sm: when its share is below 1)"
    )  # fmt: skip
    sm_saturation: float | None = Field(
        None, gt=0, le=1, description="gpu-sm: SM share a batch of one keeps busy (sigma1); "
        "unset: the default fitted on the Dilu grids"
    )  # fmt: skip
    sm_saturation_growth: float | None = Field(
        None, ge=0, le=2, description="gpu-sm: sigma(b) = min(1, sigma1 * b^growth); "
        "unset: the default fitted on the Dilu grids"
    )  # fmt: skip

    @field_validator("base_s")
    @classmethod
    def _positive_l0(cls, base_s: float, info: ValidationInfo) -> float:
        per_item = info.data.get("per_item_s")
        if per_item is not None and per_item + base_s <= 0:
            raise ValueError("per_item_s + base_s must be > 0 (a batch of one takes some time)")
        return base_s

    @field_validator("memory_steps")
    @classmethod
    def _steps(cls, steps: list[int], info: ValidationInfo) -> list[int]:
        for i in range(1, len(steps)):
            if steps[i] < steps[i - 1]:
                raise ValueError(
                    f"must not decrease (entry {i + 1} is {steps[i]}, entry {i} is "
                    f"{steps[i - 1]}): more memory holds at least as big a batch"
                )
        total = info.data.get("total_memory_gb")
        if total is not None and len(steps) > total:
            raise ValueError(f"has {len(steps)} entries but the GPU has {total} GB")
        return steps

    def min_memory_gb(self, batch: int) -> int:
        """Smallest GPU memory (GB) that holds a batch of ``batch`` items."""
        for i, largest in enumerate(self.memory_steps):
            if batch <= largest:
                return i + 1
        return len(self.memory_steps) + 1


class ModelProfile(_Strict):
    """Latency profile of one model; at least one of ``cpu`` and ``gpu``."""

    name: str = Field(min_length=1, max_length=200)
    cpu: CpuProfile | None = None
    gpu: GpuProfile | None = None

    @model_validator(mode="after")
    def _some_hardware(self) -> ModelProfile:
        if self.cpu is None and self.gpu is None:
            raise ValueError("a model needs a 'cpu' or a 'gpu' profile (or both)")
        return self


class ProfileSet(_Strict):
    """Our own profile file format: ``models: {NAME: {cpu: …, gpu: …}}``."""

    models: dict[str, ModelProfile] = Field(min_length=1)


def _from_harmonybatch_entry(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Translate one model of the authors' ``model.json`` into our schema (as a dict)."""
    out: dict[str, Any] = {"name": name}
    cpu = entry.get("CPU")
    if cpu is not None:
        a, b0 = cpu.get("mem", [0, 0])
        out["cpu"] = {
            "avg": cpu["avg"]["Exponential"],
            "max": cpu["max"]["Exponential"],
            "memory_per_item_mb": a,
            "memory_base_mb": b0,
        }
    gpu = entry.get("GPU")
    if gpu is not None:
        card = next(v for k, v in gpu.items() if isinstance(v, dict))
        g: dict[str, Any] = {
            "per_item_s": card["l1"],
            "base_s": card["l2"],
            "slice_s": card.get("t", 0.002),
            "total_memory_gb": card.get("G", 24),
            "host_memory_mb": gpu.get("mem", 512),
            "memory_steps": gpu.get("gpu_mem", []),
        }
        if "a" in card:
            g["gpu_share"] = card["a"]
        if "b" in card:
            g["host_share"] = card["b"]
        out["gpu"] = g
    return out


def _is_harmonybatch_format(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and "models" not in data
        and all(isinstance(v, dict) and ("CPU" in v or "GPU" in v) for v in data.values())
    )


def parse_profiles(data: Any, source: str, lines: LineMap | None = None) -> dict[str, ModelProfile]:
    """Parse either format into ``{name: ModelProfile}``."""
    if _is_harmonybatch_format(data):
        try:
            converted = {n: _from_harmonybatch_entry(n, e) for n, e in data.items()}
        except (KeyError, TypeError, ValueError, AttributeError, StopIteration) as exc:
            raise ConfigError(f"{source}: not a valid HarmonyBatch model.json ({exc!r})") from None
        return validate(ProfileSet, {"models": converted}, source).models
    if isinstance(data, dict) and isinstance(data.get("models"), dict):
        for name, entry in data["models"].items():
            if isinstance(entry, dict):
                entry.setdefault("name", name)
    return validate(ProfileSet, data, source, lines).models


def builtin_profiles() -> dict[str, ModelProfile]:
    """The four HarmonyBatch models (VGG19, Bert, GPT-2, VideoMAE)."""
    text = resources.files("batchwise.config").joinpath("data/harmonybatch_models.json")
    return parse_profiles(json.loads(text.read_text()), f"builtin:{BUILTIN_PROFILE_SET}")


def load_profiles(ref: str | Path | None) -> dict[str, ModelProfile]:
    """Load a profile set by built-in name (or None) or by file path."""
    if ref is None or str(ref) == BUILTIN_PROFILE_SET:
        return builtin_profiles()
    p = Path(ref)
    if not p.exists():
        raise ConfigError(
            f"profiles: {ref!r} is neither a built-in profile set "
            f"({BUILTIN_PROFILE_SET!r}) nor an existing file"
        )
    data, lines, source = load_document(p)
    return parse_profiles(data, source, lines)


def get_profile(
    profiles: dict[str, ModelProfile],
    name: str,
    file: str | None = None,
    line: int | None = None,
) -> ModelProfile:
    """Look a model up by name (case-insensitive), naming the choices if it is absent.

    ``file``/``line`` locate the ``model`` field that named it, for the error.
    """
    if name in profiles:
        return profiles[name]
    folded = {k.lower(): v for k, v in profiles.items()}
    if name.lower() in folded:
        return folded[name.lower()]
    raise ConfigError(
        f"unknown model {name!r}; known models: {', '.join(profiles)}",
        file=file,
        line=line,
        field="model",
    )
