"""Plans: how apps are grouped and which function, batch size and timeouts each group gets.

This is the contract between the planner, the simulator and (later) the live
gateway. ``batchwise plan --json`` prints exactly this model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from batchwise.config.base import StrictModel, StrictMutableModel
from batchwise.config.limits import (
    MAX_APPS,
    MAX_BATCH,
    MAX_GPU_MEMORY_GB,
    MAX_RATE,
    MAX_SLO_S,
    MAX_VCPU,
)


class FunctionSpec(StrictModel):
    """A function size: ``{"kind": "cpu", "vcpu": 1.6}``, ``{"kind": "gpu", "gpu_memory_gb": 2}``
    or ``{"kind": "gpu-sm", "sm_share": 0.2, "sm_limit": 0.4, "gpu_memory_gb": 2}``.

    Every kind also carries the vCPUs and host memory it is billed for.
    """

    kind: Literal["cpu", "gpu", "gpu-sm"]
    vcpu: float = Field(
        gt=0, le=MAX_VCPU, description="vCPUs (GPU functions: host vCPUs, m/3 on FC)"
    )
    memory_gb: float = Field(gt=0, le=MAX_VCPU * 64, description="host memory billed (GB)")
    gpu_memory_gb: int | None = Field(
        None, ge=1, le=MAX_GPU_MEMORY_GB, description="GPU memory share m (GB); GPU kinds only"
    )
    sm_share: float | None = Field(
        None, gt=0, le=1, description="guaranteed share of the GPU's SMs (gpu-sm only)"
    )
    sm_limit: float | None = Field(
        None, gt=0, le=1, description="share it may burst to, >= sm_share (gpu-sm only)"
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> FunctionSpec:
        if (self.kind != "cpu") != (self.gpu_memory_gb is not None):
            raise ValueError("gpu_memory_gb is required for GPU functions and forbidden for CPU")
        sm = self.kind == "gpu-sm"
        if sm != (self.sm_share is not None) or sm != (self.sm_limit is not None):
            raise ValueError("sm_share and sm_limit are required for gpu-sm functions and "
                             "forbidden for the others")  # fmt: skip
        if sm and self.sm_limit < self.sm_share:  # type: ignore[operator]
            raise ValueError(f"sm_limit ({self.sm_limit}) must be at least sm_share "
                             f"({self.sm_share})")  # fmt: skip
        return self


Rate = Annotated[float, Field(gt=0, le=MAX_RATE)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SLO_S)]


class GroupPlan(StrictModel):
    """One group of apps served by one function configuration.

    Invariant: ``rates``, ``slos`` and ``timeouts`` have exactly the keys of ``apps``.
    """

    apps: list[str] = Field(
        min_length=1, max_length=MAX_APPS, description="apps served, tightest SLO first"
    )
    rates: dict[str, Rate] = Field(description="request rate (req/s) this group takes of each app")
    slos: dict[str, Annotated[float, Field(gt=0, le=MAX_SLO_S)]] = Field(
        description="each app's SLO (s)"
    )
    function: FunctionSpec
    batch_size: int = Field(ge=1, le=MAX_BATCH, description="dispatch when this many requests wait")
    timeouts: dict[str, Seconds] = Field(
        description="per app: dispatch when its oldest request has waited this long (s)"
    )
    cost_per_request: float = Field(ge=0, description="full-batch cost per request (Eq. 6)")
    expected_cost_per_request: float = Field(
        ge=0, description="cost per request with Poisson batch sizes (what a simulation measures)"
    )
    latency_avg: float = Field(ge=0, description="average latency of a full batch (s)")
    latency_max: float = Field(ge=0, description="maximum latency of a full batch (s)")
    equivalent_timeout: float = Field(ge=0, description="T_eq of the group (s)")
    expected_batch_size: float = Field(ge=1, description="mean batch size under Poisson arrivals")

    @field_validator("apps")
    @classmethod
    def _unique_apps(cls, apps: list[str]) -> list[str]:
        if len(set(apps)) != len(apps):
            raise ValueError(f"lists an app twice: {apps}")
        return apps

    @field_validator("rates", "slos", "timeouts")
    @classmethod
    def _keys_are_the_apps(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        if "apps" not in info.data:  # apps itself was invalid; that error is reported
            return value
        want, have = set(info.data["apps"]), set(value)
        if have != want:
            missing, extra = sorted(want - have), sorted(have - want)
            raise ValueError(
                f"no entry for {missing}" if missing else f"entries for apps not in apps: {extra}"
            )
        return value

    @property
    def total_rate(self) -> float:
        return sum(self.rates.values())


class Plan(StrictMutableModel):
    """A complete plan for a workload.

    Invariant: an app split over several groups has the same SLO in each.
    """

    algorithm: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1, max_length=200)
    profiles: str | None = Field(None, description="profile set the plan was made with")
    prices: str = Field(description="price book name")
    currency: str
    cost_per_request: float = Field(ge=0, description="rate-weighted full-batch cost per request")
    expected_cost_per_request: float = Field(
        ge=0, description="rate-weighted expected cost per request"
    )
    planning_time_s: float = Field(ge=0)
    slo_violations_predicted: list[str] = Field(
        default_factory=list,
        description="apps whose timeout + max latency exceeds the SLO under the true latency model",
    )
    groups: list[GroupPlan] = Field(min_length=1, max_length=MAX_APPS)

    @model_validator(mode="after")
    def _one_slo_per_app(self) -> Plan:
        seen: dict[str, float] = {}
        for i, g in enumerate(self.groups):
            for app, slo in g.slos.items():
                if seen.setdefault(app, slo) != slo:
                    raise ValueError(
                        f"groups.{i}: app {app!r} has SLO {slo} here but {seen[app]} "
                        "in an earlier group"
                    )
        return self

    def app_rates(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for g in self.groups:
            for name, r in g.rates.items():
                out[name] = out.get(name, 0.0) + r
        return out
