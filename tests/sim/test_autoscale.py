"""The live controller on the simulation clock (simulate --autoscale)."""

from __future__ import annotations

import pytest

from batchwise.sim.instances import PoolSpec
from batchwise.sim.serving import simulate

from .factories import PRICES, PROFILE, cpu_fn, make_group, make_plan, poisson_trace


def _plan(vcpu: float = 0.5):
    fn = cpu_fn(1, vcpu)  # VGG19 at batch 1: ~0.9 s at 0.5 vCPU, ~0.46 s at 1
    return make_plan([make_group({"a": 0.3}, {"a": 3.0}, fn, 1)])


def test_at_five_times_the_planned_load_the_controller_grows_then_adds_instances():
    """A fixed instance of the plan's size admits under 70 % of 5x; the controller, as
    live, surges it toward its thread's 1 vCPU and starts instances within 4 cores, so
    most requests are admitted and admitted ones stay on time."""
    plan = _plan()
    trace = poisson_trace({"a": 1.5}, 300.0, seed=2)
    fixed = simulate(plan, trace, PROFILE, PRICES, seed=1, pool=PoolSpec(1, 1))
    auto = simulate(plan, trace, PROFILE, PRICES, seed=1,
                    pool=PoolSpec(1, 1, cold_start_s=3.0, autoscale=True, cores=4.0,
                                  plan_start=True))  # fmt: skip
    g = auto.groups[0]
    fixed_adm = 1 - fixed.rejected / fixed.requests
    auto_adm = 1 - auto.rejected / auto.requests
    assert fixed_adm < 0.7
    assert auto_adm > max(0.9, fixed_adm + 0.3)
    assert g.scale_events > 0 and g.peak_vcpu is not None and g.peak_vcpu > 0.5
    assert 1 < (g.instances or 0) <= 4  # within the cores at the surged size
    assert auto.slo_violation_rate < 0.02


def test_at_the_planned_load_the_controller_serves_everything_at_the_plans_cost():
    """Billing is busy time: whatever instances a burst starts, the cost per request
    stays the fixed pool's (within 5 %), and nothing is refused or late."""
    plan = _plan()
    trace = poisson_trace({"a": 0.3}, 300.0, seed=2)
    fixed = simulate(plan, trace, PROFILE, PRICES, seed=1, pool=PoolSpec(1, 1))
    auto = simulate(plan, trace, PROFILE, PRICES, seed=1,
                    pool=PoolSpec(1, 1, autoscale=True, cores=4.0, plan_start=True))  # fmt: skip
    assert auto.rejected == fixed.rejected == 0 and auto.slo_violation_rate < 0.02
    assert auto.cost_per_request == pytest.approx(fixed.cost_per_request, rel=0.05)
    assert auto.groups[0].instances <= 2
