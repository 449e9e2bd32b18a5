"""Finite instance pools: FIFO placement, cold starts, and queueing in a simulation."""

from __future__ import annotations

import math

import pytest

from batchwise.config.profiles import CpuProfile, ModelProfile
from batchwise.errors import ConfigError
from batchwise.perf.cost import batch_cost
from batchwise.sim.instances import InstancePool, PoolSpec
from batchwise.sim.serving import simulate

from .factories import PRICES, PROFILE, cpu_fn, fixed_trace, make_group, make_plan, poisson_trace


def test_batches_queue_for_the_instance_that_frees_first():
    pool = InstancePool(PoolSpec(warm=2, max=2))
    assert pool.run(0.0, 1.0) == (0.0, 1.0)  # instance 0 until 1.0
    assert pool.run(0.1, 1.0) == pytest.approx((0.1, 1.1))  # instance 1 until 1.1
    assert pool.run(0.2, 1.0) == pytest.approx((1.0, 2.0))  # waits for instance 0
    assert pool.queued_s == pytest.approx(0.8)
    assert pool.size == 2


def test_a_cold_instance_starts_only_when_it_beats_the_queue():
    pool = InstancePool(PoolSpec(warm=1, max=3, cold_start_s=0.5))
    pool.run(0.0, 2.0)  # busy until 2.0
    assert not pool.idle(0.1)
    assert pool.grow(0.1) == pytest.approx(0.6)  # a new instance, ready at 0.6
    assert pool.run(0.6, 1.0) == pytest.approx((0.6, 1.6))
    assert pool.size == 2
    pool2 = InstancePool(PoolSpec(warm=1, max=3, cold_start_s=5.0))
    pool2.run(0.0, 2.0)
    assert pool2.grow(0.1) is None  # queueing beats a 5 s cold start
    assert pool2.size == 1 and pool2.idle(2.0)
    assert InstancePool(PoolSpec(warm=1, max=1)).grow(0.0) is None  # at its max


def test_fractional_cpu_instances_run_under_a_cfs_quota():
    """0.5 vCPU: a batch of 40 ms of full-speed work after idling takes 40 ms; a second
    one in the same period finds 10 ms of quota left and finishes in the next."""
    pool = InstancePool(PoolSpec(warm=1, max=1), vcpu=0.5)
    assert pool.throttled and pool.threads == 1
    assert pool.run(0.0, 0.04) == pytest.approx((0.0, 0.04))
    assert pool.run(0.0, 0.04) == pytest.approx((0.04, 0.13))
    assert not InstancePool(PoolSpec(1, 1), vcpu=1.0).throttled  # a whole vCPU per thread
    assert not InstancePool(PoolSpec(1, 1, cpu_period_s=None), vcpu=0.5).throttled
    assert not InstancePool(PoolSpec(1, 1)).throttled  # not a CPU function


def test_warm_instances_period_timers_are_staggered():
    pool = InstancePool(PoolSpec(warm=2, max=2), vcpu=0.5)
    assert [q.phase_s for q in pool.quotas] == pytest.approx([0.0, 0.05])


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
    # (Profile times: the CFS quota of 1.6 vCPU on 2 threads would throttle long batches.)
    many = simulate(plan, trace, PROFILE, PRICES, seed=2,
                    pool=PoolSpec(50, 50, overhead_s=0.0, cpu_period_s=None))  # fmt: skip
    assert many.apps["a"].p99_latency_s == pytest.approx(free.apps["a"].p99_latency_s)
    # As live, every request also pays the gateway's overhead (batch size 1: nothing waits).
    live = simulate(plan, trace, PROFILE, PRICES, seed=2, pool=PoolSpec(50, 50, cpu_period_s=None))
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


def _fast_profile() -> ModelProfile:
    """One batch size, deterministic: 40 ms at 1 vCPU, 50 ms at 0.8 (the quota's rate)."""
    beta = 0.5
    alpha = 0.01 / (math.exp(-0.8 / beta) - math.exp(-1.0 / beta))
    gamma = 0.04 - alpha * math.exp(-1.0 / beta)
    triple = [alpha, beta, gamma]
    return ModelProfile(name="fast", cpu=CpuProfile(avg=[triple], max=[triple], memory_base_mb=100))


def test_a_quota_lets_an_idle_instance_run_a_short_batch_at_full_speed():
    """Requests a second apart on a 0.8-vCPU instance: each 40 ms batch finds the period's
    80 ms quota unspent (as live), where the profile's back-to-back time is 50 ms."""
    fast = _fast_profile()
    fn = cpu_fn(1, 0.8)
    plan = make_plan([make_group({"a": 1.0}, {"a": 1.0}, fn, 1, timeouts={"a": 0.0})])
    trace = fixed_trace({"a": [i + 0.5 for i in range(20)]}, 21.0)
    quota = simulate(plan, trace, fast, PRICES, pool=PoolSpec(1, 1, overhead_s=0.0))
    profile_time = simulate(plan, trace, fast, PRICES,
                            pool=PoolSpec(1, 1, overhead_s=0.0, cpu_period_s=None))  # fmt: skip
    assert quota.apps["a"].max_latency_s == pytest.approx(0.04)
    assert profile_time.apps["a"].max_latency_s == pytest.approx(0.05)
    assert quota.cost_per_request == pytest.approx(batch_cost(fn, 0.04, PRICES))
    assert profile_time.cost_per_request == pytest.approx(batch_cost(fn, 0.05, PRICES))
    assert quota.groups[0].mean_throttle_s == pytest.approx(0.0, abs=1e-12)


def test_a_quota_throttles_batches_back_to_back_to_its_rate():
    """100 requests at once on one 0.8-vCPU instance: 100 × 40 ms of work at 80 ms per
    100 ms ends at about 5 s, and every batch is billed its throttled time."""
    fast = _fast_profile()
    fn = cpu_fn(1, 0.8)
    plan = make_plan([make_group({"a": 1.0}, {"a": 10.0}, fn, 1, timeouts={"a": 0.0})])
    trace = fixed_trace({"a": [0.0] * 100}, 1.0)
    res = simulate(plan, trace, fast, PRICES, pool=PoolSpec(1, 1, overhead_s=0.0))
    assert res.apps["a"].max_latency_s == pytest.approx(100 * 0.04 / 0.8, abs=0.04)
    g = res.groups[0]
    assert g.mean_throttle_s == pytest.approx(0.01, rel=0.05)  # 50 ms per batch, 40 of work
    per_batch = batch_cost(fn, 0.05, PRICES)
    assert res.cost_per_request == pytest.approx(per_batch, rel=0.05)


def test_finite_mode_admits_as_the_gateway_does_under_overload():
    """3x one instance's capacity: the gateway's admission (same code) refuses what the
    queue would make late, so admitted requests keep their SLO; without it the queue
    grows without bound and nearly every request is late."""
    fn = cpu_fn(1, 1.0)  # ~0.46 s a batch of 1: ~2.2 req/s
    plan = make_plan([make_group({"a": 2.0}, {"a": 2.0}, fn, 1)])
    trace = poisson_trace({"a": 6.6}, 300.0, seed=4)
    on = simulate(plan, trace, PROFILE, PRICES, seed=1, pool=PoolSpec(1, 1))
    off = simulate(plan, trace, PROFILE, PRICES, seed=1, pool=PoolSpec(1, 1, admission=False))
    a_on, a_off = on.apps["a"], off.apps["a"]
    assert off.rejected == a_off.rejected == 0 and a_off.slo_violation_rate > 0.9
    assert 0.25 < a_on.admitted_fraction < 0.45
    assert on.rejected == a_on.rejected == on.groups[0].rejected > 0
    assert a_on.slo_violation_rate < 0.02
    assert a_on.p99_latency_s <= 2.0 + 0.015
    # Cost is per admitted (served) request, as live measures it.
    assert on.cost_per_request == pytest.approx(on.total_cost / (on.requests - on.rejected))
    d = on.to_dict()
    assert d["rejected"] == on.rejected and d["apps"]["a"]["admitted_fraction"] < 0.45


def test_the_pools_snapshot_predicts_free_times_from_starts_not_drawn_ends():
    pool = InstancePool(PoolSpec(warm=2, max=2, cpu_period_s=None))
    pool.run(0.0, 1.0, items=4)  # instance 0: 0 - 1.0
    pool.run(0.0, 2.0, items=2)  # instance 1: 0 - 2.0
    pool.run(0.1, 1.0, items=3)  # queued on instance 0: 1.0 - 2.0
    queued, free = pool.snapshot(0.5, avg=lambda b: 0.1 * b)
    assert queued == [3]
    assert free == pytest.approx([0.4, 0.2])  # start + avg (late ones: the replay clamps)
    queued, free = pool.snapshot(1.5, avg=lambda b: 0.1 * b)
    assert queued == [] and free == pytest.approx([1.3, 0.2])  # the queued one runs since 1.0
    queued, free = pool.snapshot(2.5, avg=lambda b: 0.1 * b)
    assert queued == [] and free == pytest.approx([2.5, 2.5])  # idle: free now


def _two_apps_at_twice_capacity(**pool: str):
    """A tight (1.5 s) and a loose (6 s) app on one instance at twice its capacity
    (~0.46 s a batch of 1: ~2.2 req/s), Poisson, 600 s: the run with the ``pool`` options
    and the first-come, arrival-order one."""
    fn = cpu_fn(1, 1.0)
    group = make_group({"tight": 1.0, "loose": 1.0}, {"tight": 1.5, "loose": 6.0}, fn, 1)
    trace = poisson_trace({"tight": 1.0, "loose": 3.0}, 600.0, seed=5)
    return [simulate(make_plan([group]), trace, PROFILE, PRICES, seed=1,
                     pool=PoolSpec(1, 1, **opts)) for opts in (pool, {})]  # fmt: skip


def test_under_overload_the_tight_app_is_served_first_and_the_loose_one_refused():
    """Two apps share one instance at twice its capacity. In deadline order the tight
    app's requests overtake the loose queue and most are admitted (in arrival order,
    under 10 %: the loose app's queue fills the instance); the loose app absorbs the
    refusals (the jumpers it expects); admitted requests of both keep their SLOs."""
    res, fifo = _two_apps_at_twice_capacity(batch_order="deadline")
    tight, loose = res.apps["tight"], res.apps["loose"]
    assert fifo.apps["tight"].admitted_fraction < 0.1  # the loose queue fills the instance
    assert tight.admitted_fraction > 0.75 and loose.admitted_fraction < 0.6
    assert tight.admitted_fraction > loose.admitted_fraction + 0.25
    assert tight.slo_violation_rate < 0.02 and loose.slo_violation_rate < 0.02


def test_an_even_overload_share_admits_each_app_about_as_often():
    """The same two apps at twice the instance's capacity, arrival order. First-come: the
    loose app's queue fills the instance (the tight app under 10 % admitted). An even
    share holds every request to the tight app's SLO while it sends: both apps are
    admitted at about the same rate, as much goodput is served, all of it on time."""
    even, fifo = _two_apps_at_twice_capacity(overload_share="even")
    tight, loose = even.apps["tight"], even.apps["loose"]
    assert fifo.apps["tight"].admitted_fraction < 0.1
    assert tight.admitted_fraction > 0.3
    assert abs(tight.admitted_fraction - loose.admitted_fraction) < 0.15
    served = [r.requests - r.rejected for r in (even, fifo)]
    assert served[0] > 0.9 * served[1]
    assert tight.slo_violation_rate < 0.02 and loose.slo_violation_rate < 0.02


def test_a_batch_after_an_idle_spell_takes_the_slowdown_back_to_back_ones_do_not():
    pool = InstancePool(PoolSpec(warm=1, max=1, cpu_period_s=None))
    slow = lambda idle_s: 1.5 if idle_s >= 0.025 else 1.0  # noqa: E731
    assert pool.run(1.0, 0.1, 1, slow) == pytest.approx((1.0, 1.15))  # idle since 0: cold
    assert pool.run(1.0, 0.1, 1, slow) == pytest.approx((1.15, 1.25))  # queued: warm
    assert pool.run(1.26, 0.1, 1, slow) == pytest.approx((1.26, 1.36))  # 10 ms gap: warm
    assert pool.idle_extra_s == pytest.approx(0.05)


def _idle_profile(factor: float) -> ModelProfile:
    from batchwise.config.profiles import IdlePoint, IdleSlowdown

    prof = _fast_profile()
    cpu = prof.cpu.model_copy(update={"idle_slowdown": IdleSlowdown(
        after_s=0.025, points=[IdlePoint(threads=1, batch=1, factor=factor)])})  # fmt: skip
    return prof.model_copy(update={"cpu": cpu})


def test_the_simulator_charges_the_profiles_idle_slowdown_at_light_load_only():
    """Requests a second apart on a 1-vCPU instance: every 40 ms batch follows an idle
    second and takes 1.25 × 40 ms (billed so); 100 at once run back to back, only the
    first cold; --no-idle-slowdown (``idle_slowdown=False``) charges 40 ms throughout."""
    prof = _idle_profile(1.25)
    fn = cpu_fn(1, 1.0)
    plan = make_plan([make_group({"a": 1.0}, {"a": 10.0}, fn, 1, timeouts={"a": 0.0})])
    sparse = fixed_trace({"a": [i + 0.5 for i in range(20)]}, 21.0)
    spec = PoolSpec(1, 1, overhead_s=0.0)
    light = simulate(plan, sparse, prof, PRICES, pool=spec)
    assert light.apps["a"].max_latency_s == pytest.approx(0.05)
    assert light.cost_per_request == pytest.approx(batch_cost(fn, 0.05, PRICES))
    assert light.groups[0].mean_idle_slowdown_s == pytest.approx(0.01)
    off = simulate(plan, sparse, prof, PRICES, pool=PoolSpec(1, 1, overhead_s=0.0,
                                                             idle_slowdown=False))  # fmt: skip
    assert off.apps["a"].max_latency_s == pytest.approx(0.04)
    burst = simulate(plan, fixed_trace({"a": [0.5] * 100}, 1.0), prof, PRICES, pool=spec)
    assert burst.groups[0].mean_idle_slowdown_s == pytest.approx(0.01 / 100)


def test_the_simulators_work_at_full_speed_is_the_measured_whole_vcpu_curve():
    """The fit says 40 ms at 1 vCPU, the profiler measured 30 ms there. A 0.5-vCPU instance
    (one thread) idle between batches runs a batch's work at full speed within its quota:
    the measured 30 ms (the fit's 40 ms from a profile that kept no cells). Without the
    quota model it is charged the back-to-back time at 0.5 vCPU: the measured 30 ms × 1 / 0.5."""
    from batchwise.config.profiles import MeasuredCurve

    fitted_prof = _fast_profile()
    curve = MeasuredCurve(vcpu=1.0, threads=1, batch=[1], avg_s=[0.03], max_s=[0.03])
    prof = fitted_prof.model_copy(
        update={"cpu": fitted_prof.cpu.model_copy(update={"measured": [curve]})}
    )
    fn = cpu_fn(1, 0.5)
    plan = make_plan([make_group({"a": 1.0}, {"a": 1.0}, fn, 1, timeouts={"a": 0.0})])
    trace = fixed_trace({"a": [i + 0.5 for i in range(10)]}, 11.0)
    spec = PoolSpec(1, 1, overhead_s=0.0, idle_slowdown=False)
    measured = simulate(plan, trace, prof, PRICES, pool=spec)
    fitted = simulate(plan, trace, fitted_prof, PRICES, pool=spec)
    no_quota = simulate(plan, trace, prof, PRICES,
                        pool=PoolSpec(1, 1, overhead_s=0.0, cpu_period_s=None))  # fmt: skip
    assert measured.apps["a"].max_latency_s == pytest.approx(0.03)
    assert fitted.apps["a"].max_latency_s == pytest.approx(0.04)
    assert no_quota.apps["a"].max_latency_s == pytest.approx(0.06)
