"""Plots write non-empty PNG files."""

from __future__ import annotations

from batchwise.config.apps import AppSpec
from batchwise.sim.plots import plot_adaptive, plot_latency_cdf
from batchwise.sim.replan import simulate_adaptive
from batchwise.sim.serving import simulate

from .factories import PRICES, PROFILE, cpu_fn, gpu_fn, make_group, make_plan, poisson_trace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_latency_cdf_png(tmp_path):
    plan = make_plan(
        [
            make_group({"g": 20.0}, {"g": 0.8}, gpu_fn(2), 13),
            make_group({"c": 3.0}, {"c": 1.5}, cpu_fn(4), 4),
        ]
    )
    res = simulate(plan, poisson_trace({"g": 20.0, "c": 3.0}, 60.0), PROFILE, PRICES)
    out = plot_latency_cdf(res, {"g": 0.8, "c": 1.5}, tmp_path / "sub" / "cdf.png")
    data = out.read_bytes()
    assert out.exists() and len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_adaptive_png(tmp_path):
    def planner(apps: list[AppSpec]):
        return make_plan(
            [make_group({a.name: a.rate}, {a.name: a.slo}, gpu_fn(2), 13) for a in apps]
        )

    apps = [AppSpec(name="g", slo=0.8, rate=10.0)]
    res = simulate_adaptive(poisson_trace({"g": 10.0}, 180.0), apps, planner, PROFILE, PRICES)
    out = plot_adaptive(res, tmp_path / "adaptive.png")
    data = out.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)
