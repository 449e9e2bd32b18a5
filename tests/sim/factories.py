"""Factories for simulator tests: Poisson traces and hand-built plans on the real VGG19 profile."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from batchwise.config.plan import FunctionSpec, GroupPlan, Plan
from batchwise.config.prices import PriceBook, load_prices
from batchwise.config.profiles import ModelProfile, builtin_profiles
from batchwise.perf.cost import (
    expected_batch_size,
    expected_cost_per_request,
    full_batch_cost_per_request,
)
from batchwise.perf.functions import Function, cpu_function, gpu_function
from batchwise.perf.latency import LatencyModel
from batchwise.perf.timeout import equivalent_timeout
from batchwise.traces.base import ArrivalTrace

PROFILE: ModelProfile = builtin_profiles()["VGG19"]
PRICES: PriceBook = load_prices(None)
LATENCY = LatencyModel(PROFILE.cpu, PROFILE.gpu)


def poisson_trace(rates: Mapping[str, float], duration_s: float, seed: int = 0) -> ArrivalTrace:
    """Independent Poisson arrivals per app (sorted, within [0, duration_s))."""
    rng = np.random.default_rng(seed)
    arrivals = {}
    for app, rate in rates.items():
        n = rng.poisson(rate * duration_s)
        arrivals[app] = np.sort(rng.uniform(0.0, duration_s, size=n))
    return ArrivalTrace(arrivals, duration_s)


def fixed_trace(times: Mapping[str, list[float]], duration_s: float) -> ArrivalTrace:
    return ArrivalTrace(
        {a: np.asarray(sorted(t), dtype=float) for a, t in times.items()}, duration_s
    )


def cpu_fn(batch: int, vcpu: float = 1.6) -> Function:
    fn = cpu_function(PROFILE, batch, vcpu, PRICES)
    assert fn is not None
    return fn


def gpu_fn(gpu_memory_gb: int = 2) -> Function:
    fn = gpu_function(PROFILE, gpu_memory_gb, PRICES)
    assert fn is not None
    return fn


def spec_of(fn: Function) -> FunctionSpec:
    if fn.kind == "cpu":
        return FunctionSpec(kind="cpu", vcpu=fn.vcpu, memory_gb=fn.memory_gb)
    return FunctionSpec(
        kind="gpu", vcpu=fn.vcpu, memory_gb=fn.memory_gb, gpu_memory_gb=fn.gpu_memory_gb
    )


def predicted_cost(fn: Function, batch: int, rates: list[float], timeouts: list[float]) -> float:
    """The renewal-reward cost per request the simulator should reproduce."""
    t_eq, r = equivalent_timeout(timeouts, rates)
    avgs = np.array([LATENCY.avg(fn, n) for n in range(1, batch + 1)])
    return expected_cost_per_request(fn, avgs, r, t_eq, PRICES)


def make_group(
    rates: Mapping[str, float],
    slos: Mapping[str, float],
    fn: Function,
    batch: int,
    timeout_from: str = "max",
    timeouts: Mapping[str, float] | None = None,
) -> GroupPlan:
    """A group whose timeouts are ``slo - L_max(b)`` (or ``slo - L_avg(b)``) unless given."""
    l_avg, l_max = LATENCY.avg(fn, batch), LATENCY.max(fn, batch)
    if timeouts is None:
        latency = l_max if timeout_from == "max" else l_avg
        timeouts = {a: max(0.0, slos[a] - latency) for a in rates}
    apps = sorted(rates, key=lambda a: slos[a])
    t_list = [timeouts[a] for a in apps]
    r_list = [rates[a] for a in apps]
    t_eq, r = equivalent_timeout(t_list, r_list)
    return GroupPlan(
        apps=apps,
        rates=dict(rates),
        slos={a: slos[a] for a in apps},
        function=spec_of(fn),
        batch_size=batch,
        timeouts=dict(timeouts),
        cost_per_request=full_batch_cost_per_request(fn, l_avg, batch, PRICES),
        expected_cost_per_request=predicted_cost(fn, batch, r_list, t_list),
        latency_avg=l_avg,
        latency_max=l_max,
        equivalent_timeout=t_eq,
        expected_batch_size=expected_batch_size(r, t_eq, batch),
    )


def make_plan(groups: list[GroupPlan], algorithm: str = "hand") -> Plan:
    total = sum(g.total_rate for g in groups)
    return Plan(
        algorithm=algorithm,
        model=PROFILE.name,
        prices=PRICES.name,
        currency=PRICES.currency,
        cost_per_request=sum(g.cost_per_request * g.total_rate for g in groups) / total,
        expected_cost_per_request=sum(g.expected_cost_per_request * g.total_rate for g in groups)
        / total,
        planning_time_s=0.0,
        groups=groups,
    )
