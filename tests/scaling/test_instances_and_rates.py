"""The instance-count policy and the rate estimators (pure)."""

from __future__ import annotations

import pytest

from batchwise.scaling.instances import GroupSignal, want_instances
from batchwise.scaling.rates import RateEstimator


def sig(**kw) -> GroupSignal:
    base = dict(instances=2, busy_s=0.0, interval_s=1.0, queued_items=0, batch_size=8,
                rejected=0)  # fmt: skip
    base.update(kw)
    return GroupSignal(**base)


@pytest.mark.parametrize(("busy", "want"), [(0.0, 1), (0.7, 1), (0.71, 2), (1.4, 2), (2.0, 3)])
def test_instances_follow_busy_time_at_the_target_utilisation(busy, want):
    assert want_instances(sig(busy_s=busy)).instances == want


def test_a_backlog_or_refusals_at_load_ask_for_one_more():
    assert want_instances(sig(busy_s=1.0, queued_items=17)).instances == 3
    w = want_instances(sig(busy_s=1.0, rejected=3))
    assert w.instances == 3 and "3 refused" in w.reason


def test_refusals_at_low_utilisation_add_nothing():
    assert want_instances(sig(busy_s=0.2, rejected=5)).instances == 1
    # ... not even as offered work: an SLO no batch meets is not fixed by more instances.
    assert want_instances(sig(busy_s=0.2, rejected=5, offered_items=900,
                              item_s=0.005)).instances == 1  # fmt: skip


def test_a_step_in_offered_work_is_answered_in_one_decision():
    """6x the work two saturated instances can do: ask for all of it now, not +1."""
    w = want_instances(sig(busy_s=2.0, rejected=40, offered_items=1200, item_s=0.005))
    assert w.instances == 9 and "needs 9" in w.reason  # 1200 * 5 ms = 6 s/s at 70 %
    assert want_instances(sig(busy_s=2.0, rejected=40)).instances == 3  # without it: +1
    # Offered work below what the instances do changes nothing (busy time decides).
    assert want_instances(sig(busy_s=1.4, offered_items=100, item_s=0.005)).instances == 2


def test_a_few_arrivals_of_a_slow_model_at_low_utilisation_are_noise():
    """3 arrivals of a 0.9 s model in one second, instances 27 % busy: not 4 instances."""
    w = want_instances(sig(instances=1, busy_s=0.27, offered_items=3, item_s=0.9, batch_size=1))
    assert w.instances == 1
    busy = want_instances(sig(instances=1, busy_s=0.9, offered_items=3, item_s=0.9,
                              batch_size=1))  # fmt: skip
    assert busy.instances == 4  # saturated: the offered work counts


def test_last_ewma_and_max_estimators():
    est = {m: RateEstimator(m) for m in ("last", "ewma", "max")}
    for e in est.values():
        e.seed({"a": 10.0})
        e.observe({"a": 600}, 60.0)  # 10 req/s
        e.observe({"a": 3000}, 60.0)  # a rise to 50 req/s
    assert est["last"].estimate()["a"] == 50
    assert est["ewma"].estimate()["a"] == pytest.approx(30)
    assert est["max"].estimate()["a"] == 50  # follows the rise at once
    for e in est.values():
        e.observe({"a": 0}, 60.0)  # a quiet window
    assert est["last"].estimate()["a"] == pytest.approx(1e-3)  # floored, never 0
    assert est["max"].estimate()["a"] == pytest.approx(15)  # falls back gradually


def test_an_idle_server_keeps_planning_for_the_declared_rates_unless_the_floor_is_lowered():
    """Ten quiet windows: with the default floor (1) the estimate stays at the apps file's
    rate, so a lull does not shrink the plan to one the next burst meets unprepared;
    with a floor of 0.5 it stops at half; with 0 it falls to the planners' floor."""
    est = {f: RateEstimator("max") for f in (1.0, 0.5, 0.0)}
    for f, e in est.items():
        e.seed({"a": 10.0, "b": 2.0}, f)
        for _ in range(10):
            e.observe({}, 60.0)
    assert est[1.0].estimate() == {"a": 10.0, "b": 2.0}
    assert est[0.5].estimate() == {"a": 5.0, "b": 1.0}
    assert est[0.0].estimate()["a"] < 0.02
    e = est[1.0]
    e.observe({"a": 3000}, 60.0)  # a rise above the declared rate is followed at once
    assert e.estimate()["a"] == 50
    with pytest.raises(ValueError, match="floor"):
        RateEstimator("max").seed({"a": 1.0}, 1.5)


def test_the_controller_floors_its_rates_at_the_served_plans_declared_rates():
    from types import SimpleNamespace

    from batchwise.serving.control import Controller
    from batchwise.serving.server import ServeOptions

    for fraction, want in ((1.0, 8.0), (0.25, 2.0)):
        server = SimpleNamespace(options=ServeOptions(rate_floor=fraction),
                                 plan=SimpleNamespace(app_rates=lambda: {"a": 8.0}))  # fmt: skip
        ctl = Controller(server)
        for _ in range(3):
            ctl.rates.observe({}, 60.0)  # ewma 8 -> 4 -> 2 -> 1: below both floors
        assert ctl.rates.estimate()["a"] == pytest.approx(want)


def test_unknown_estimator_is_refused():
    with pytest.raises(ValueError, match="one of"):
        RateEstimator("median")
