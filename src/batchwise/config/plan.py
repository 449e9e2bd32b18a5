"""Plans: how apps are grouped and which function, batch size and timeouts each group gets.

This is the contract between the planner, the simulator and (later) the live
gateway. ``batchwise plan --json`` prints exactly this model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FunctionSpec(BaseModel):
    """A function size: ``{"kind": "cpu", "vcpu": 1.6}`` or ``{"kind": "gpu", "gpu_memory_gb": 2}``.

    Both kinds also carry the vCPUs and host memory they are billed for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["cpu", "gpu"]
    vcpu: float = Field(gt=0, description="vCPUs (GPU functions: host vCPUs, m/3 on FC)")
    memory_gb: float = Field(gt=0, description="host memory billed (GB)")
    gpu_memory_gb: int | None = Field(None, ge=1, description="GPU memory share m (GB); GPU only")

    @model_validator(mode="after")
    def _kind_fields(self) -> FunctionSpec:
        if (self.kind == "gpu") != (self.gpu_memory_gb is not None):
            raise ValueError("gpu_memory_gb is required for GPU functions and forbidden for CPU")
        return self


class GroupPlan(BaseModel):
    """One group of apps served by one function configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    apps: list[str] = Field(min_length=1, description="apps served, tightest SLO first")
    rates: dict[str, float] = Field(description="request rate (req/s) this group takes of each app")
    slos: dict[str, float] = Field(description="each app's SLO (s)")
    function: FunctionSpec
    batch_size: int = Field(ge=1, description="dispatch when this many requests wait")
    timeouts: dict[str, float] = Field(
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

    @property
    def total_rate(self) -> float:
        return sum(self.rates.values())


class Plan(BaseModel):
    """A complete plan for a workload."""

    model_config = ConfigDict(extra="forbid")

    algorithm: str
    model: str
    profiles: str | None = Field(None, description="profile set the plan was made with")
    prices: str = Field(description="price book name")
    currency: str
    cost_per_request: float = Field(description="rate-weighted full-batch cost per request")
    expected_cost_per_request: float = Field(description="rate-weighted expected cost per request")
    planning_time_s: float = Field(ge=0)
    slo_violations_predicted: list[str] = Field(
        default_factory=list,
        description="apps whose timeout + max latency exceeds the SLO under the true latency model",
    )
    groups: list[GroupPlan]

    def app_rates(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for g in self.groups:
            for name, r in g.rates.items():
                out[name] = out.get(name, 0.0) + r
        return out
