"""Factories shared by the config, perf, serving and planner tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from batchwise.config.apps import AppSpec
from batchwise.config.plan import Plan
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.perf.cost import batch_cost
from batchwise.perf.functions import cpu_function, cpu_grid, function_from_spec, gpu_function
from batchwise.perf.latency import LatencyModel
from batchwise.perf.timeout import equivalent_timeout, max_reachable_batch

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "examples"
DILU_DIR = REPO_ROOT / "tests" / "data" / "dilu"
"""The Dilu authors' data, copied (tests/data/SOURCES.md): profiling grids, workloads."""

MODELS = ("VGG19", "Bert", "GPT-2", "VideoMAE")
"""The four built-in HarmonyBatch models."""

SLO_RANGE_S: dict[str, tuple[float, float]] = {
    "VGG19": (0.3, 1.0),
    "Bert": (0.3, 1.0),
    "GPT-2": (1.0, 2.4),
    "VideoMAE": (1.0, 2.4),
}
"""The paper's SLO range per model (seconds)."""

RATE_RANGE = (0.2, 30.0)
"""Request rates of random apps (req/s): lognormal around 3 req/s, clipped to this."""

TOL = 1e-9


def make_apps(n: int, seed: int = 0, model: str = "VGG19", prefix: str = "app") -> list[AppSpec]:
    """``n`` random apps with SLOs in ``model``'s range and lognormal-ish rates."""
    rng = np.random.default_rng(seed)
    lo, hi = SLO_RANGE_S[model]
    slos = np.round(rng.uniform(lo, hi, size=n), 3)
    rates = np.clip(np.exp(rng.normal(np.log(3.0), 1.3, size=n)), *RATE_RANGE)
    return [
        AppSpec(name=f"{prefix}{i + 1}", slo=float(s), rate=float(round(r, 3)))
        for i, (s, r) in enumerate(zip(slos, rates, strict=True))
    ]


def table1_apps() -> list[AppSpec]:
    """The paper's Table I: three VGG-19 apps."""
    return [
        AppSpec(name="app1", slo=0.5, rate=5),
        AppSpec(name="app2", slo=0.8, rate=10),
        AppSpec(name="app3", slo=1.0, rate=20),
    ]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def check_plan_feasible(
    plan: Plan,
    apps: list[AppSpec],
    profile: ModelProfile,
    prices: PriceBook,
    *,
    meets_slo: bool = True,
    may_split: bool = False,
    formula: str = "eq5",
) -> None:
    """Assert every invariant a plan must satisfy (see tests/planner/test_planners.py)."""
    by_name = {a.name: a for a in apps}
    lm = LatencyModel(profile.cpu, profile.gpu)
    covered: dict[str, float] = {}
    seen_in: dict[str, int] = {}
    for g in plan.groups:
        assert set(g.apps) == set(g.rates) == set(g.slos) == set(g.timeouts)
        for name in g.apps:
            covered[name] = covered.get(name, 0.0) + g.rates[name]
            seen_in[name] = seen_in.get(name, 0) + 1
            assert g.slos[name] == by_name[name].slo
            assert g.timeouts[name] >= 0.0
            if meets_slo:
                assert g.timeouts[name] + g.latency_max <= g.slos[name] + TOL, (name, g)
        # Reachability with the group's own T_eq and total rate.
        assert g.equivalent_timeout >= 0.0
        assert g.batch_size <= max_reachable_batch(g.total_rate, g.equivalent_timeout), g
        assert g.batch_size <= int(np.floor(g.total_rate * g.equivalent_timeout + TOL)) + 1
        if g.batch_size > 1:
            # The per-app timeouts fold (Eq. 5 or tightest) to the reported T_eq.
            t_eq, r = equivalent_timeout(
                [g.timeouts[a] for a in g.apps], [g.rates[a] for a in g.apps], formula
            )
            assert abs(t_eq - g.equivalent_timeout) < 1e-9
            assert abs(r - g.total_rate) < 1e-9
        fn = function_from_spec(g.function)
        b = g.batch_size
        if fn.kind == "cpu":
            assert profile.cpu is not None
            assert 1 <= b <= profile.cpu.max_batch
            assert g.function.gpu_memory_gb is None
            assert any(abs(fn.vcpu - c) < 1e-9 for c in cpu_grid(prices))
            # Memory rules: the function is exactly what the platform sells for this batch.
            assert cpu_function(profile, b, fn.vcpu, prices) == fn
        else:
            assert profile.gpu is not None
            assert 1 <= b <= profile.gpu.max_batch
            assert fn.gpu_memory_gb >= profile.gpu.min_memory_gb(b)
            assert prices.gpu_memory_gb_min <= fn.gpu_memory_gb <= prices.gpu_memory_gb_max
            ref = gpu_function(profile, fn.gpu_memory_gb, prices)
            assert ref is not None
            assert abs(ref.vcpu - fn.vcpu) < 1e-3 and ref.memory_gb == fn.memory_gb
            fn = ref
        # Group figures follow from the latency and cost models.
        assert abs(lm.avg(fn, b) - g.latency_avg) <= 1e-12 * max(1.0, g.latency_avg)
        assert abs(lm.max(fn, b) - g.latency_max) <= 1e-12 * max(1.0, g.latency_max)
        cost = batch_cost(fn, lm.avg(fn, b), prices) / b
        assert abs(cost - g.cost_per_request) <= 1e-9 * cost
    assert set(covered) == set(by_name), "every app must be planned"
    for name, app in by_name.items():
        assert abs(covered[name] - app.rate) <= 1e-9 * max(1.0, app.rate), name
        if not may_split:
            assert seen_in[name] == 1, f"{name} appears in {seen_in[name]} groups"
    total = sum(g.total_rate for g in plan.groups)
    weighted = sum(g.total_rate * g.cost_per_request for g in plan.groups) / total
    assert abs(plan.cost_per_request - weighted) <= 1e-12 * weighted


def cli_exit(argv: list[str]) -> int:
    """Run ``batchwise ARGV`` in-process; its exit status (0 when it returns)."""
    from batchwise.cli import main

    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
