"""The vertical surge policy: bound groups fill the free vCPU, each up to its threads."""

from __future__ import annotations

import pytest

from batchwise.scaling.surge import SurgeGroup, surge_vcpus


def test_a_bound_group_fills_what_its_last_instance_left():
    # two 0.7-vCPU one-thread instances on 2 cores leave 0.6: each takes 0.3
    assert surge_vcpus([SurgeGroup(0.7, 2, 1, True)], 2.0) == [pytest.approx(1.0)]


def test_a_group_that_is_not_bound_runs_at_its_plan():
    assert surge_vcpus([SurgeGroup(0.7, 2, 1, False)], 2.0) == [0.7]


def test_no_instance_grows_beyond_its_threads_and_the_rest_goes_to_the_others():
    out = surge_vcpus([SurgeGroup(0.5, 1, 1, True), SurgeGroup(0.5, 1, 4, True)], 3.0)
    assert out == [pytest.approx(1.0), pytest.approx(2.0)]  # 2 free: 0.5 to one, 1.5 to two


def test_free_vcpu_is_shared_in_proportion_to_what_each_group_holds():
    out = surge_vcpus([SurgeGroup(0.5, 2, 4, True), SurgeGroup(1.0, 1, 4, True)], 4.0)
    # 2 free, held 1.0 and 1.0: one vCPU more for each group
    assert out == [pytest.approx(1.0), pytest.approx(2.0)]


def test_others_are_counted_at_their_planned_size_and_nothing_free_means_no_surge():
    groups = [SurgeGroup(0.7, 1, 1, False), SurgeGroup(0.8, 1, 2, True)]
    assert surge_vcpus(groups, 2.0) == [0.7, pytest.approx(1.3)]
    assert surge_vcpus([SurgeGroup(1.0, 2, 1, True)], 2.0) == [1.0]
    assert surge_vcpus([SurgeGroup(0.7, 3, 1, True)], 2.0) == [0.7]  # over-committed


def test_the_total_never_exceeds_the_cores():
    groups = [SurgeGroup(0.3, 3, 2, True), SurgeGroup(0.45, 2, 1, True),
              SurgeGroup(0.6, 1, 8, False), SurgeGroup(0.25, 0, 2, True)]  # fmt: skip
    out = surge_vcpus(groups, 4.0)
    assert sum(g.instances * v for g, v in zip(groups, out, strict=True)) == pytest.approx(4.0)
    assert out[2] == 0.6 and out[3] == 0.25 and out[1] == pytest.approx(0.85)


def test_a_vertical_claim_is_served_before_the_water_filling():
    # b grows instead of starting a second 0.3 instance: it is owed that 0.3 first,
    # so a (bound too) gets nothing of the 0.3 left free.
    a, b = SurgeGroup(0.7, 2, 1, True), SurgeGroup(0.3, 1, 1, True, claim_vcpu=0.3)
    assert surge_vcpus([a, b], 2.0) == [pytest.approx(0.7), pytest.approx(0.6)]
    # with more free, what is left after the claim is shared as before
    out = surge_vcpus([SurgeGroup(0.7, 2, 1, True), b], 3.0)
    assert out[1] >= 0.6 and out[0] > 0.7
    assert 2 * out[0] + out[1] == pytest.approx(3.0)


def test_claims_beyond_the_free_vcpu_or_the_threads_are_cut():
    a = SurgeGroup(0.5, 2, 1, True, claim_vcpu=5.0)  # at most one thread each
    assert surge_vcpus([a], 4.0) == [pytest.approx(1.0)]
    c, d = SurgeGroup(0.5, 1, 2, True, claim_vcpu=1.0), SurgeGroup(0.5, 1, 2, True, claim_vcpu=1.0)
    assert surge_vcpus([c, d], 2.0) == [pytest.approx(1.0), pytest.approx(1.0)]  # halved
