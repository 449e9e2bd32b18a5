"""Re-planning every window from the rates observed in the previous one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from batchwise.config.apps import AppSpec
from batchwise.config.plan import Plan
from batchwise.errors import ConfigError
from batchwise.sim.replan import DEFAULT_REPLAN_WINDOW_S, simulate_adaptive

from .factories import PRICES, PROFILE, cpu_fn, fixed_trace, gpu_fn, make_group, make_plan

APPS = [AppSpec(name="a", slo=0.8, rate=5.0), AppSpec(name="b", slo=1.5, rate=2.0)]


class RecordingPlanner:
    """One group per app: GPU above ``gpu_above`` req/s, else a CPU batch of 1."""

    def __init__(self, gpu_above: float = 10.0) -> None:
        self.gpu_above = gpu_above
        self.calls: list[dict[str, float]] = []

    def __call__(self, apps: list[AppSpec]) -> Plan:
        self.calls.append({a.name: a.rate for a in apps})
        groups = []
        for a in apps:
            if a.rate > self.gpu_above:
                groups.append(make_group({a.name: a.rate}, {a.name: a.slo}, gpu_fn(2), 13))
            else:
                groups.append(make_group({a.name: a.rate}, {a.name: a.slo}, cpu_fn(1, 2.0), 1))
        return make_plan(groups)


def step_trace(seed: int = 0) -> tuple:
    """App a: 5 req/s for 2 minutes, then 40 req/s; app b: 2 req/s for 1 minute, then silent."""
    rng = np.random.default_rng(seed)

    def poisson(rate: float, lo: float, hi: float) -> np.ndarray:
        return np.sort(rng.uniform(lo, hi, rng.poisson(rate * (hi - lo))))

    a = np.concatenate([poisson(5.0, 0, 120), poisson(40.0, 120, 300)])
    b = poisson(2.0, 0, 60)
    return fixed_trace({"a": a.tolist(), "b": b.tolist()}, 300.0), a, b


def test_each_window_is_planned_from_the_previous_windows_rates():
    trace, a, b = step_trace()
    planner = RecordingPlanner()
    res = simulate_adaptive(trace, APPS, planner, PROFILE, PRICES, window_s=60.0, seed=1)
    assert len(planner.calls) == len(res.windows) == 5
    assert planner.calls[0] == {"a": 5.0, "b": 2.0}  # nominal rates
    for k in range(1, 5):
        in_prev = (a >= (k - 1) * 60) & (a < k * 60)
        assert planner.calls[k]["a"] == pytest.approx(in_prev.sum() / 60.0)
    assert planner.calls[1]["b"] == pytest.approx(len(b) / 60.0)
    assert planner.calls[2]["b"] == pytest.approx(1 / 60.0)  # silent: floor rate
    # The switch to GPU follows the load one window late.
    assert [w.gpu_groups for w in res.windows] == [0, 0, 0, 1, 1]
    assert res.windows[3].functions[0] == "GPU 2 GB"


def test_windows_partition_requests_and_cost():
    trace, _, _ = step_trace()
    res = simulate_adaptive(trace, APPS, RecordingPlanner(), PROFILE, PRICES, window_s=60.0)
    assert sum(w.requests for w in res.windows) == res.requests == trace.count()
    assert sum(w.cost for w in res.windows) == pytest.approx(res.total_cost)
    assert [w.start_s for w in res.windows] == [0, 60, 120, 180, 240]
    assert res.windows[-1].end_s == 300.0
    assert sum(w.violations for w in res.windows) == sum(
        s.slo_violations for s in res.apps.values()
    )
    # Timeouts are slo - L_max and CPU batches of 1 fit their SLOs: nothing is late.
    assert res.slo_violation_rate == 0.0
    # Window 2 ran CPU at 40 req/s (planned for 5): cheaper batching arrives in window 3.
    assert res.windows[3].cost_per_request < res.windows[2].cost_per_request


def test_buffered_requests_stay_with_the_plan_that_took_them():
    # Window 0 batches on GPU with timeout 0.5 s; window 1 serves at once on CPU.
    def planner(apps: list[AppSpec]) -> Plan:
        if not calls:
            calls.append(1)
            return make_plan([make_group({"a": 5.0}, {"a": 2.0}, gpu_fn(2), 13,
                                         timeouts={"a": 0.5})])  # fmt: skip
        calls.append(1)
        return make_plan([make_group({"a": apps[0].rate}, {"a": 2.0}, cpu_fn(1, 2.0), 1)])

    calls: list[int] = []
    trace = fixed_trace({"a": [59.9, 60.0, 60.1]}, 120.0)
    res = simulate_adaptive(
        trace, [AppSpec(name="a", slo=2.0, rate=5.0)], planner, PROFILE, PRICES, window_s=60.0
    )
    lat = res.latencies["a"]
    assert lat[0] >= 0.5  # waited for the old group's deadline at 60.4, not re-batched
    assert lat[1] < 0.5 and lat[2] < 0.5  # arrival at exactly 60.0 belongs to window 1
    assert [w.requests for w in res.windows] == [1, 2]
    assert res.windows[0].cost > 0 and res.windows[0].functions == ("GPU 2 GB",)


def test_deterministic_for_equal_seeds():
    trace, _, _ = step_trace(seed=2)
    runs = [
        simulate_adaptive(trace, APPS, RecordingPlanner(), PROFILE, PRICES, 60.0, seed=s)
        for s in (3, 3, 4)
    ]
    assert runs[0].to_dict() == runs[1].to_dict()
    assert runs[0].to_dict() != runs[2].to_dict()


def test_unknown_app_and_bad_window():
    trace = fixed_trace({"a": [1.0], "zzz": [2.0]}, 10.0)
    with pytest.raises(ConfigError, match="zzz"):
        simulate_adaptive(trace, APPS, RecordingPlanner(), PROFILE, PRICES)
    with pytest.raises(ValueError):
        simulate_adaptive(trace, APPS, RecordingPlanner(), PROFILE, PRICES, window_s=0.0)


def test_to_dict_is_plain_json():
    trace, _, _ = step_trace()
    res = simulate_adaptive(trace, APPS, RecordingPlanner(), PROFILE, PRICES)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["window_s"] == DEFAULT_REPLAN_WINDOW_S
    assert len(d["windows"]) == 5
    assert {"start_s", "requests", "cost", "cost_per_request", "violations", "groups",
            "gpu_groups", "cpu_groups", "functions"} <= set(d["windows"][0])  # fmt: skip
