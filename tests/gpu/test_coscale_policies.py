"""Co-scaling policies (Dilu): the vertical controller's shares and feedback state
transitions tick by tick, the lazy horizontal scaler's window votes, and the profile
grid as a continuous latency model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchwise.errors import ConfigError
from batchwise.gpu import horizontal, vertical
from batchwise.gpu.latency_grid import LatencyGrid
from batchwise.gpu.measure import Measurement
from batchwise.gpu.vertical import Budget, Priority, Tenant
from utils import DILU_DIR

HI = Tenant("inf", Priority.HIGH, 0.3, 0.6)
HI2 = Tenant("inf2", Priority.HIGH, 0.2, 0.5)
LO = Tenant("train", Priority.LOW, 0.5, 0.9)


# -- vertical shares ---------------------------------------------------------------------


def test_sole_busy_inference_runs_at_its_limit_and_the_corunner_gets_the_rest():
    shares = vertical.allocate([HI, LO], {"inf": True}, Budget())
    assert shares == {"inf": 0.6, "train": pytest.approx(0.4)}


def test_idle_inference_holds_nothing_and_the_corunner_bursts_to_its_limit():
    shares = vertical.allocate([HI, LO], {"inf": False}, Budget())
    assert shares == {"inf": 0.0, "train": 0.9}


def test_two_busy_inference_tenants_keep_requests_and_split_the_spare_by_request():
    shares = vertical.allocate([HI, HI2, LO], {"inf": True, "inf2": True}, Budget())
    # spare 1 - 0.5 = 0.5 split 3:2 -> 0.3 + 0.3 = 0.6 (its limit), 0.2 + 0.2 = 0.4
    assert shares["inf"] == pytest.approx(0.6)
    assert shares["inf2"] == pytest.approx(0.4)
    assert shares["train"] == pytest.approx(vertical.BUDGET_FLOOR * LO.request)


def test_the_budget_caps_the_corunner_and_never_below_its_floor():
    assert vertical.allocate([HI, LO], {}, Budget(scale=0.5))["train"] == pytest.approx(0.45)
    floor = vertical.allocate([HI, LO], {}, Budget(scale=vertical.BUDGET_FLOOR / 10))["train"]
    assert floor == pytest.approx(vertical.BUDGET_FLOOR * LO.request)


@given(st.booleans(), st.booleans(), st.floats(0.01, 1.0))
def test_shares_stay_within_request_limit_and_the_device(b1, b2, scale):
    shares = vertical.allocate([HI, HI2, LO], {"inf": b1, "inf2": b2}, Budget(scale=scale))
    for t in (HI, HI2):
        busy = {"inf": b1, "inf2": b2}[t.name]
        if busy:
            assert t.request - 1e-9 <= shares[t.name] <= t.limit + 1e-9
        else:
            assert shares[t.name] == 0
    assert shares["train"] <= LO.limit + 1e-9
    assert sum(shares.values()) <= 1.0 + vertical.BUDGET_FLOOR * LO.request + 1e-9


def test_static_shares_reserve_the_request_or_the_limit_busy_or_not():
    assert vertical.static_shares([HI, LO], "request") == {"inf": 0.3, "train": pytest.approx(0.7)}
    assert vertical.static_shares([HI, LO], "limit") == {"inf": 0.6, "train": pytest.approx(0.4)}


def test_a_tenant_needs_request_within_limit():
    with pytest.raises(ValueError, match="request <= limit"):
        Tenant("x", Priority.HIGH, 0.5, 0.4)
    with pytest.raises(ValueError, match="request <= limit"):
        Tenant("x", Priority.HIGH, 0.0, 0.4)


def test_cpu_shares_are_vcpus_of_the_machine():
    serve = Tenant("inst", Priority.HIGH, 0.6, 1.2)
    batch = Tenant("job", Priority.LOW, 0.1, 1.5)
    busy = vertical.allocate([serve, batch], {"inst": True}, Budget(), capacity=1.5)
    assert busy == {"inst": 1.2, "job": pytest.approx(0.3)}
    idle = vertical.allocate([serve, batch], {"inst": False}, Budget(), capacity=1.5)
    assert idle == {"inst": 0.0, "job": 1.5}


# -- vertical feedback: state transitions on a fake tick clock ---------------------------


def test_an_emergency_divides_the_budget_by_the_overflow():
    b = vertical.feedback(Budget(), 2.0)
    assert (b.scale, b.emergencies, b.calm) == (0.5, 1, 0)
    assert vertical.feedback(Budget(), 1.59).scale == 1.0  # just under the threshold


def test_llm_inference_has_the_tighter_emergency_threshold():
    assert vertical.feedback(Budget(), 1.35, llm=True).emergencies == 1
    assert vertical.feedback(Budget(), 1.35, llm=False).emergencies == 0


def test_repeated_emergencies_stop_at_the_floor():
    b = Budget()
    for _ in range(20):
        b = vertical.feedback(b, 10.0)
    assert b.scale == vertical.BUDGET_FLOOR


def test_recovery_takes_five_calm_ticks_per_step_and_stops_at_the_limits():
    b = Budget(scale=0.5)
    for tick in range(1, vertical.RECOVERY_EVERY):
        b = vertical.feedback(b, 0.0)
        assert (b.scale, b.calm) == (0.5, tick)
    b = vertical.feedback(b, 1.1)
    assert (b.scale, b.calm, b.recoveries) == (pytest.approx(0.65), 0, 1)
    for _ in range(10 * vertical.RECOVERY_EVERY):
        b = vertical.feedback(b, 0.0)
    assert b.scale == 1.0 and vertical.settled(b)


def test_a_tick_between_recovery_and_emergency_holds_and_restarts_the_calm_count():
    b = Budget(scale=0.5, calm=4)
    b = vertical.feedback(b, 1.4)
    assert (b.scale, b.calm) == (0.5, 0)


# -- horizontal: the lazy window ---------------------------------------------------------


def _feed(rule, samples, n):
    window = horizontal.Window()
    decisions = []
    for rps in samples:
        n, window = horizontal.decide(rule, window, rps, n)
        decisions.append(n)
    return decisions, window


def test_scale_out_needs_twenty_over_capacity_seconds_of_the_last_forty():
    rule = horizontal.LazyRule(per_instance=100.0)
    decisions, _ = _feed(rule, [150.0] * 19, 1)
    assert decisions[-1] == 1  # 19 votes: not yet
    decisions, window = _feed(rule, [150.0] * 20, 1)
    assert decisions[-1] == 2 and window.samples == ()  # acted: the window is cleared


def test_scattered_over_capacity_seconds_count_too():
    rule = horizontal.LazyRule(per_instance=100.0)
    decisions, _ = _feed(rule, [150.0, 50.0] * 20, 1)  # 20 over within 40 samples
    assert decisions[-1] == 2


def test_scale_out_asks_for_what_the_median_over_capacity_sample_needs():
    rule = horizontal.LazyRule(per_instance=100.0)
    decisions, _ = _feed(rule, [450.0] * 20, 1)
    assert decisions[-1] == 5


def test_scale_in_needs_thirty_under_capacity_seconds_and_never_below_one():
    rule = horizontal.LazyRule(per_instance=100.0)
    decisions, _ = _feed(rule, [50.0] * 29, 3)
    assert decisions[-1] == 3
    decisions, _ = _feed(rule, [50.0] * 30, 3)
    assert decisions[-1] == 2
    decisions, _ = _feed(rule, [0.0] * 200, 1)
    assert set(decisions) == {1}


def test_the_bounds_cap_scale_out():
    rule = horizontal.LazyRule(per_instance=100.0, hi=3)
    decisions, _ = _feed(rule, [10_000.0] * 20, 1)
    assert decisions[-1] == 3


def test_the_window_forgets_samples_older_than_forty_seconds():
    rule = horizontal.LazyRule(per_instance=100.0)
    decisions, window = _feed(rule, [150.0] * 19 + [50.0] * 40, 1)
    assert set(decisions) == {1} and len(window.samples) == 40


def test_the_first_count_covers_the_first_rate():
    rule = horizontal.LazyRule(per_instance=100.0)
    assert horizontal.initial_instances(rule, 0.0) == 1
    assert horizontal.initial_instances(rule, 250.0) == 3


# -- the grid as a latency model ---------------------------------------------------------


@pytest.fixture(scope="module")
def resnet() -> LatencyGrid:
    return LatencyGrid.from_csv(DILU_DIR / "resnet152.csv")


def test_grid_points_are_exact(resnet):
    assert resnet.latency(16, 0.3) == pytest.approx(0.039966, rel=1e-6)
    assert resnet.throughput(16, 0.3) == pytest.approx(16 / 0.039966, rel=1e-6)


def test_between_points_latency_is_linear_in_share_and_batch(resnet):
    mid_share = resnet.latency(16, 0.35)
    assert mid_share == pytest.approx((resnet.latency(16, 0.3) + resnet.latency(16, 0.4)) / 2)
    mid_batch = resnet.latency(12, 0.3)
    assert mid_batch == pytest.approx((resnet.latency(8, 0.3) + resnet.latency(16, 0.3)) / 2)


def test_below_the_smallest_share_latency_grows_as_the_share_shrinks(resnet):
    assert resnet.latency(4, 0.05) == pytest.approx(2 * resnet.latency(4, 0.1))
    assert resnet.latency(4, 1.0) == resnet.latency(4, 1.5)


def test_an_incomplete_grid_is_refused():
    points = {(1, 10): Measurement(0.1, 10.0), (2, 10): Measurement(0.15, 13.0),
              (1, 20): Measurement(0.05, 20.0)}  # fmt: skip
    with pytest.raises(ConfigError, match="batch 2 at 20 % SM"):
        LatencyGrid(points, "g.csv")
