"""Serving simulation on the real VGG19 profile and default prices, with hand-built plans."""

from __future__ import annotations

import json

import numpy as np
import pytest

from batchwise.errors import ConfigError
from batchwise.perf.service import service_time_bounds
from batchwise.sim.core import Environment
from batchwise.sim.serving import GroupServer, ServeLog, simulate

from .factories import (
    LATENCY,
    PRICES,
    PROFILE,
    cpu_fn,
    fixed_trace,
    gpu_fn,
    make_group,
    make_plan,
    poisson_trace,
    predicted_cost,
)

GPU_SLO, GPU_RATE, GPU_BATCH = 0.8, 20.0, 13
CPU_SLO, CPU_RATE, CPU_BATCH = 1.5, 4.0, 4


@pytest.fixture(scope="module")
def two_group_plan():
    gpu = make_group({"g": GPU_RATE}, {"g": GPU_SLO}, gpu_fn(2), GPU_BATCH)
    cpu = make_group({"c": CPU_RATE}, {"c": CPU_SLO}, cpu_fn(CPU_BATCH), CPU_BATCH)
    return make_plan([gpu, cpu])


@pytest.fixture(scope="module")
def long_run(two_group_plan):
    trace = poisson_trace({"g": GPU_RATE, "c": CPU_RATE}, 2000.0, seed=11)
    return trace, simulate(two_group_plan, trace, PROFILE, PRICES, seed=5)


def test_cost_per_request_matches_the_analytic_expectation(long_run):
    _, res = long_run
    gpu, cpu = res.groups
    # Single-app groups: T_eq is the app's timeout, so the renewal-reward formula is exact.
    exp_gpu = predicted_cost(gpu_fn(2), GPU_BATCH, [GPU_RATE], [GPU_SLO - gpu_max(GPU_BATCH)])
    exp_cpu = predicted_cost(
        cpu_fn(CPU_BATCH), CPU_BATCH, [CPU_RATE], [CPU_SLO - cpu_max(CPU_BATCH)]
    )
    assert gpu.predicted_cost_per_request == pytest.approx(exp_gpu)
    assert gpu.cost_per_request == pytest.approx(exp_gpu, rel=0.05)
    assert cpu.cost_per_request == pytest.approx(exp_cpu, rel=0.05)
    assert res.cost_per_request == pytest.approx(res.predicted_cost_per_request, rel=0.05)
    assert gpu.mean_batch_size == pytest.approx(gpu.predicted_mean_batch_size, rel=0.05)


def gpu_max(n: int) -> float:
    return LATENCY.max(gpu_fn(2), n)


def cpu_max(n: int) -> float:
    return LATENCY.max(cpu_fn(CPU_BATCH), n)


def test_timeouts_from_max_latency_never_violate(long_run):
    _, res = long_run
    assert res.slo_violation_rate == 0.0
    for app, slo in (("g", GPU_SLO), ("c", CPU_SLO)):
        assert res.apps[app].slo_violations == 0
        assert res.latencies[app].max() <= slo + 1e-9
        assert res.apps[app].p99_latency_s <= slo


def test_timeouts_from_avg_latency_violate():
    # BATCH's deterministic assumption: t = slo - L_avg(b); a full batch whose first
    # request waited almost t and drew S > L_avg misses the SLO.
    fn = cpu_fn(2)
    plan = make_plan([make_group({"c": 2.0}, {"c": 1.0}, fn, 2, timeout_from="avg")])
    trace = poisson_trace({"c": 2.0}, 1000.0, seed=3)
    res = simulate(plan, trace, PROFILE, PRICES, seed=1)
    assert res.apps["c"].slo_violations > 0
    assert res.apps["c"].max_latency_s > 1.0
    safe = make_plan([make_group({"c": 2.0}, {"c": 1.0}, fn, 2, timeout_from="max")])
    assert simulate(safe, trace, PROFILE, PRICES, seed=1).apps["c"].slo_violations == 0


def _server(batch: int, timeout: float) -> tuple[Environment, GroupServer, ServeLog]:
    env = Environment()
    group = make_group({"a": 5.0}, {"a": 5.0}, gpu_fn(2), batch, timeouts={"a": timeout})
    log = ServeLog(100)
    server = GroupServer(env, group, LATENCY, PRICES, np.random.default_rng(0), log)
    return env, server, log


def test_full_buffer_dispatches_at_once_and_rest_waits_for_deadline():
    env, server, log = _server(batch=4, timeout=0.5)
    for i in range(6):  # six requests at t=1: one full batch now, two wait 0.5 s
        env.schedule(1.0, lambda i=i: server.submit(i, "a"))
    env.run()
    assert log.batch_sizes == [4, 2]
    lo1, hi1 = service_time_bounds(LATENCY.avg(gpu_fn(2), 4), LATENCY.max(gpu_fn(2), 4))
    assert np.all((log.done_s[:4] >= 1.0 + lo1) & (log.done_s[:4] <= 1.0 + hi1))
    assert np.all(log.done_s[4:6] >= 1.5)
    assert server.batches == 2 and server.requests == 6
    assert np.isnan(log.done_s[6:]).all()


def test_batch_of_one_dispatches_immediately():
    env, server, log = _server(batch=1, timeout=0.4)
    for i, t in enumerate((0.1, 0.1, 0.2)):
        env.schedule(t, lambda i=i: server.submit(i, "a"))
    env.run()
    assert log.batch_sizes == [1, 1, 1]
    lo, hi = service_time_bounds(LATENCY.avg(gpu_fn(2), 1), LATENCY.max(gpu_fn(2), 1))
    served = log.done_s[:3] - np.array([0.1, 0.1, 0.2])
    assert np.all((served >= lo) & (served <= hi))


def test_batches_never_exceed_batch_size():
    plan = make_plan([make_group({"g": 60.0}, {"g": 0.8}, gpu_fn(2), 5)])
    trace = poisson_trace({"g": 60.0}, 200.0, seed=2)
    res = simulate(plan, trace, PROFILE, PRICES)
    assert res.groups[0].mean_batch_size <= 5
    assert res.groups[0].mean_batch_size > 4.9  # rate*timeout >> 5: nearly always full
    # A batch of n draws S for n: with b=5 on GPU no latency may exceed timeout + L_max(5).
    assert res.latencies["g"].max() <= 0.8 + 1e-9


def test_remaining_requests_are_flushed_at_their_deadlines():
    plan = make_plan([make_group({"g": 1.0}, {"g": 0.8}, gpu_fn(2), 13)])
    trace = fixed_trace({"g": [9.99]}, 10.0)  # last instant of the trace
    res = simulate(plan, trace, PROFILE, PRICES)
    timeout = plan.groups[0].timeouts["g"]
    assert res.requests == 1 and res.groups[0].batches == 1
    assert res.latencies["g"][0] >= timeout
    assert res.total_cost > 0


def test_same_seed_same_result_and_seed_matters(two_group_plan):
    trace = poisson_trace({"g": GPU_RATE, "c": CPU_RATE}, 100.0, seed=4)
    a = simulate(two_group_plan, trace, PROFILE, PRICES, seed=9)
    b = simulate(two_group_plan, trace, PROFILE, PRICES, seed=9)
    c = simulate(two_group_plan, trace, PROFILE, PRICES, seed=10)
    assert a.to_dict() == b.to_dict()
    for app in a.latencies:
        np.testing.assert_array_equal(a.latencies[app], b.latencies[app])
    assert a.to_dict() != c.to_dict()


def test_split_app_is_routed_by_weight():
    # MBS-style: app "a" split 3:1 across a GPU and a CPU group; "b" only on the GPU.
    gpu = make_group({"a": 30.0, "b": 5.0}, {"a": 0.8, "b": 1.0}, gpu_fn(2), 13)
    cpu = make_group({"a": 10.0}, {"a": 0.8}, cpu_fn(1), 1)
    plan = make_plan([gpu, cpu])
    trace = poisson_trace({"a": 40.0, "b": 5.0}, 200.0, seed=8)
    res = simulate(plan, trace, PROFILE, PRICES)
    n_a = trace.count("a")
    cpu_share = res.groups[1].requests / n_a
    assert cpu_share == pytest.approx(0.25, abs=0.02)
    assert res.groups[0].requests + res.groups[1].requests == trace.count()
    assert res.apps["a"].requests == n_a and res.apps["b"].requests == trace.count("b")
    # "a"'s batches mix sizes 1 (CPU) and ~13 (GPU); "b" only sees GPU batches.
    assert res.apps["a"].mean_batch_size < res.apps["b"].mean_batch_size


def test_trace_app_missing_from_plan_is_a_config_error(two_group_plan):
    trace = poisson_trace({"g": 1.0, "x": 1.0, "y": 1.0}, 50.0)
    with pytest.raises(ConfigError, match="x, y"):
        simulate(two_group_plan, trace, PROFILE, PRICES)


def test_to_dict_is_json_of_plain_values(long_run):
    _, res = long_run
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d) == {
        "algorithm", "model", "currency", "seed", "duration_s", "requests", "total_cost",
        "cost_per_request", "predicted_cost_per_request", "slo_violation_rate", "apps", "groups",
        "rejected", "admitted_fraction",
    }  # fmt: skip
    assert d["rejected"] == 0 and d["admitted_fraction"] == 1.0  # serverless admits all
    assert d["requests"] == res.requests == sum(g["requests"] for g in d["groups"])
    assert d["total_cost"] == pytest.approx(sum(g["cost"] for g in d["groups"]))
    assert set(d["apps"]["g"]) >= {"requests", "slo_violation_rate", "p50_latency_s",
                                   "p99_latency_s", "mean_batch_size"}  # fmt: skip
    assert "latencies" not in d


def test_empty_trace():
    plan = make_plan([make_group({"g": 1.0}, {"g": 0.8}, gpu_fn(2), 13)])
    res = simulate(plan, fixed_trace({"g": []}, 10.0), PROFILE, PRICES)
    assert res.requests == 0 and res.total_cost == 0.0 and res.apps == {}
    json.dumps(res.to_dict())


@pytest.mark.timeout(60)
def test_an_hour_at_sixty_requests_per_second_is_fast():
    # ~216k requests; a few seconds on a laptop. The timeout guards against
    # per-event work growing with the buffer or the trace.
    plan = make_plan(
        [
            make_group({"g": 40.0}, {"g": 0.8}, gpu_fn(2), 13),
            make_group({"c": 20.0}, {"c": 1.5}, cpu_fn(4), 4),
        ]
    )
    trace = poisson_trace({"g": 40.0, "c": 20.0}, 3600.0, seed=1)
    res = simulate(plan, trace, PROFILE, PRICES, seed=3)
    assert res.requests == trace.count() > 200_000
    assert res.cost_per_request == pytest.approx(res.predicted_cost_per_request, rel=0.01)
