"""End-to-end simulation runs with the real planners (no stubs)."""

from __future__ import annotations

import itertools

from batchwise.config.apps import AppSpec
from batchwise.config.prices import load_prices
from batchwise.config.profiles import builtin_profiles
from batchwise.planner import plan
from batchwise.sim.runs import run_simulation

APPS = [
    AppSpec(name="app1", slo=0.5, rate=5),
    AppSpec(name="app2", slo=0.8, rate=10),
    AppSpec(name="app3", slo=1.0, rate=20),
]
TRACES = ["app1=minute:app1", "app2=minute:app2", "app3=minute:app3"]


def test_replanning_with_the_real_dp_planner_meets_slos(tmp_path):
    profile, prices = builtin_profiles()["VGG19"], load_prices(None)
    p = plan(APPS, profile, prices, "dp")
    rep = run_simulation(
        p, profile, prices, APPS, TRACES, 300.0, seed=3, replan_algorithm="dp",
        window_s=60.0, plot=tmp_path / "cdf.png",
    )  # fmt: skip
    assert rep.adaptive is not None
    assert len(rep.adaptive.windows) == 5
    assert rep.adaptive.requests == rep.static.requests > 10_000
    # Both runs honour every SLO: the dp planner budgets with L_max.
    assert rep.static.slo_violation_rate == 0.0
    assert rep.adaptive.slo_violation_rate == 0.0
    # Window k is planned from the rates observed in window k-1 (window 0: nominal).
    windows = rep.adaptive.windows
    assert windows[0].planned_rates == {"app1": 5.0, "app2": 10.0, "app3": 20.0}
    for prev, cur in itertools.pairwise(windows):
        assert abs(sum(cur.planned_rates.values()) * 60.0 - prev.requests) < 1e-6
    # The bursty shipped traces make a one-window-late plan cost more or less than
    # the static one, but never wildly so.
    assert 0.7 < rep.adaptive.cost_per_request / rep.static.cost_per_request < 1.4
    assert [p.name for p in map(__import__("pathlib").Path, rep.plots)] == [
        "cdf.png",
        "cdf-replan.png",
    ]
    for f in rep.plots:
        assert (tmp_path / f.split("/")[-1]).stat().st_size > 5_000


def test_static_cost_matches_the_plans_prediction_on_poisson():
    profile, prices = builtin_profiles()["Bert"], load_prices(None)
    apps = [AppSpec(name=f"a{i}", slo=0.3 + 0.1 * i, rate=2.0 + i) for i in range(6)]
    p = plan(apps, profile, prices, "dp")
    rep = run_simulation(p, profile, prices, apps, ["poisson"], 1500.0, seed=11)
    ratio = rep.static.cost_per_request / rep.static.predicted_cost_per_request
    assert abs(ratio - 1.0) < 0.05, ratio
    assert rep.static.slo_violation_rate == 0.0
