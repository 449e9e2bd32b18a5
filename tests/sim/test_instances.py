"""Finite instance pools: FIFO placement, cold starts, and queueing in a simulation."""

from __future__ import annotations

import pytest

from batchwise.errors import ConfigError
from batchwise.sim.instances import InstancePool, PoolSpec
from batchwise.sim.serving import simulate

from .factories import PRICES, PROFILE, cpu_fn, fixed_trace, make_group, make_plan, poisson_trace


def test_batches_queue_for_the_instance_that_frees_first():
    pool = InstancePool(PoolSpec(warm=2, max=2))
    assert pool.run(0.0, 1.0) == 1.0  # instance 0 until 1.0
    assert pool.run(0.1, 1.0) == pytest.approx(1.1)  # instance 1 until 1.1
    assert pool.run(0.2, 1.0) == pytest.approx(2.0)  # waits for instance 0
    assert pool.queued_s == pytest.approx(0.8)
    assert pool.size == 2


def test_a_cold_instance_starts_only_when_it_beats_the_queue():
    pool = InstancePool(PoolSpec(warm=1, max=3, cold_start_s=0.5))
    pool.run(0.0, 2.0)  # busy until 2.0
    assert pool.run(0.1, 1.0) == pytest.approx(1.6)  # new instance ready at 0.6
    assert pool.size == 2
    pool2 = InstancePool(PoolSpec(warm=1, max=3, cold_start_s=5.0))
    pool2.run(0.0, 2.0)
    assert pool2.run(0.1, 1.0) == pytest.approx(3.0)  # queueing (2.0) beats a 5 s cold start
    assert pool2.size == 1


@pytest.mark.parametrize(("warm", "top", "cold"), [(0, 1, 0.0), (2, 1, 0.0), (1, 1, -1.0)])
def test_bad_pool_specs_are_config_errors(warm, top, cold):
    with pytest.raises(ConfigError):
        PoolSpec(warm, top, cold)


def test_one_instance_queues_what_serverless_runs_in_parallel():
    fn = cpu_fn(1, 1.0)
    group = make_group({"a": 2.0}, {"a": 10.0}, fn, 1)
    plan = make_plan([group])
    trace = fixed_trace({"a": [0.0, 0.0, 0.0]}, 1.0)
    free = simulate(plan, trace, PROFILE, PRICES, seed=1)
    one = simulate(plan, trace, PROFILE, PRICES, seed=1, pool=PoolSpec(1, 1))
    # Same batches and cost; only the waiting differs.
    assert one.total_cost == pytest.approx(free.total_cost)
    assert one.apps["a"].max_latency_s > 2.5 * free.apps["a"].mean_latency_s
    assert one.groups[0].mean_queue_s > 0 and free.groups[0].mean_queue_s == 0
    assert one.groups[0].instances == 1 and free.groups[0].instances is None


def test_enough_instances_match_serverless():
    group = make_group({"a": 3.0}, {"a": 1.0}, cpu_fn(1, 1.6), 1)
    plan = make_plan([group])
    trace = poisson_trace({"a": 3.0}, 200.0, seed=3)
    free = simulate(plan, trace, PROFILE, PRICES, seed=2)
    many = simulate(plan, trace, PROFILE, PRICES, seed=2, pool=PoolSpec(50, 50, overhead_s=0.0))
    assert many.apps["a"].p99_latency_s == pytest.approx(free.apps["a"].p99_latency_s)
    # As live, every request also pays the gateway's overhead (batch size 1: nothing waits).
    live = simulate(plan, trace, PROFILE, PRICES, seed=2, pool=PoolSpec(50, 50))
    assert live.apps["a"].p99_latency_s == pytest.approx(free.apps["a"].p99_latency_s + 0.015)


def test_a_fixed_machine_batches_with_the_gateways_timeouts():
    """A lone request waits its whole timeout: the plan's 0.9 s serverless, but on a fixed
    machine min(0.9, SLO - L_max(b)) - overhead, plus the overhead itself, as live."""
    from .factories import LATENCY

    fn = cpu_fn(4, 2.0)  # L_max(4) ~ 0.96 s
    group = make_group({"a": 1.0}, {"a": 1.5}, fn, 4, timeouts={"a": 0.9})
    plan = make_plan([group])
    trace = fixed_trace({"a": [0.0]}, 1.0)
    free = simulate(plan, trace, PROFILE, PRICES, seed=1)
    fixed = simulate(plan, trace, PROFILE, PRICES, seed=1, pool=PoolSpec(1, 1, overhead_s=0.1))
    live_t = min(0.9, 1.5 - LATENCY.max(fn, 4)) - 0.1
    assert 0 < live_t < 0.8  # the test means something: the SLO bound bites
    gap = fixed.apps["a"].max_latency_s - free.apps["a"].max_latency_s
    assert gap == pytest.approx(live_t + 0.1 - 0.9)
