"""All planners: Table I, feasibility on random instances, speed, errors, comparison."""

from __future__ import annotations

import time

import numpy as np
import pytest

from batchwise.config.apps import AppSpec
from batchwise.errors import BatchwiseError, PlanningError
from batchwise.perf.cost import batch_cost
from batchwise.perf.functions import Function, cpu_function, gpu_function
from batchwise.perf.latency import LatencyModel
from batchwise.planner import DEFAULT_ALGORITHM, Algorithm, PlannerOptions, get_planner, plan
from batchwise.planner.baselines import even_split
from batchwise.planner.compare import compare, rows_to_dicts
from utils import MODELS, check_plan_feasible, make_apps

SINGLE_KIND = {Algorithm.CPU_ONLY, Algorithm.GPU_ONLY}
"""Planners restricted to one kind; GPT-2/VideoMAE SLOs near 1 s can be out of CPU reach."""


# --- Table I (the paper's normalised costs under the fc price book) -----------------------


def per_request(lm: LatencyModel, fn: Function, b: int, prices) -> float:
    """Full-batch cost per request: batch_cost(fn, L_avg(b)) / b."""
    return batch_cost(fn, lm.avg(fn, b), prices) / b


def test_table1_paper_plans_give_the_paper_ratios(vgg19, prices_fc):
    lm = LatencyModel(vgg19.cpu, vgg19.gpu)
    cpu = lambda c, b: cpu_function(vgg19, b, c, prices_fc)  # noqa: E731
    gpu2 = gpu_function(vgg19, 2, prices_fc)
    # BATCH: app1 (1.55 vCPU, b1), app2 and app3 (1.5 vCPU, b2); rates 5, 10, 20.
    batch = (
        5 * per_request(lm, cpu(1.55, 1), 1, prices_fc)
        + 10 * per_request(lm, cpu(1.5, 2), 2, prices_fc)
        + 20 * per_request(lm, cpu(1.5, 2), 2, prices_fc)
    ) / 35
    # HarmonyBatch: app1 on 1.6 vCPU b1, app2 + app3 (30 req/s) on a 2 GB GPU, b13.
    harmony = (
        5 * per_request(lm, cpu(1.6, 1), 1, prices_fc) + 30 * per_request(lm, gpu2, 13, prices_fc)
    ) / 35
    # MBS+: the 35 req/s split evenly; 1.6 vCPU b1 and a 2 GB GPU b11.
    mbs = (
        17.5 * per_request(lm, cpu(1.6, 1), 1, prices_fc)
        + 17.5 * per_request(lm, gpu2, 11, prices_fc)
    ) / 35
    assert harmony / batch == pytest.approx(0.635, abs=0.005)
    assert mbs / batch == pytest.approx(0.881, abs=0.005)


def test_table1_planners(vgg19, prices_fc, table1_apps):
    batch = plan(table1_apps, vgg19, prices_fc, "batch")
    # BATCH finds the paper's sizes: (1.55 vCPU, b1), (1.5 vCPU, b2) x 2.
    got = [(g.apps, g.function.kind, g.function.vcpu, g.batch_size) for g in batch.groups]
    assert got == [
        (["app1"], "cpu", 1.55, 1),
        (["app2"], "cpu", 1.5, 2),
        (["app3"], "cpu", 1.5, 2),
    ]
    exact = plan(table1_apps, vgg19, prices_fc, "exact")
    assert exact.cost_per_request / batch.cost_per_request == pytest.approx(0.601, abs=0.005)
    dp = plan(table1_apps, vgg19, prices_fc)
    assert dp.algorithm == DEFAULT_ALGORITHM.value == "dp"
    assert dp.cost_per_request == pytest.approx(exact.cost_per_request, rel=1e-12)


def test_batch_planner_predicts_slo_violations_on_table1(vgg19, prices_fc, table1_apps):
    """BATCH budgets with L_avg, so its timeouts leave no room for the true L_max."""
    p = plan(table1_apps, vgg19, prices_fc, "batch")
    assert p.slo_violations_predicted, "BATCH should violate SLOs under the true model"
    assert set(p.slo_violations_predicted) <= {"app1", "app2", "app3"}
    for g in p.groups:
        for a in g.apps:
            late = g.timeouts[a] + g.latency_max > g.slos[a] + 1e-9
            assert late == (a in p.slo_violations_predicted)
    # The same search with the true L_max (cpu-only) predicts no violations.
    assert plan(table1_apps, vgg19, prices_fc, "cpu-only").slo_violations_predicted == []


# --- Feasibility on random instances --------------------------------------------------------

INSTANCES = [(seed, MODELS[seed % 4], 1 + (seed * 7) % 12) for seed in range(40)]


@pytest.mark.parametrize(("seed", "model", "n"), INSTANCES)
def test_every_planner_is_feasible_on_random_instances(seed, model, n, profiles, prices_fc):
    apps = make_apps(n, seed, model)
    profile = profiles[model]
    for algo in Algorithm:
        try:
            p = plan(apps, profile, prices_fc, algo)
        except PlanningError:
            # Only single-kind planners may find no function; the others always can here.
            assert algo in SINGLE_KIND, (algo, model)
            continue
        assert p.algorithm == algo.value
        check_plan_feasible(
            p,
            apps,
            profile,
            prices_fc,
            meets_slo=algo is not Algorithm.BATCH,
            may_split=algo is Algorithm.MBS,
        )
        if algo is not Algorithm.BATCH:
            assert p.slo_violations_predicted == []
        if algo is Algorithm.CPU_ONLY or algo is Algorithm.BATCH:
            assert {g.function.kind for g in p.groups} == {"cpu"}
        if algo is Algorithm.GPU_ONLY:
            assert {g.function.kind for g in p.groups} == {"gpu"}


@pytest.mark.parametrize("seed", range(8))
def test_planners_are_feasible_under_paper_prices_and_tightest_formula(
    seed, profiles, prices_paper
):
    model = MODELS[seed % 4]
    apps = make_apps(6, 100 + seed, model)
    opts = PlannerOptions(eq_timeout="tightest")
    for algo in ("dp", "harmony", "mbs", "exact", "per-app"):
        p = plan(apps, profiles[model], prices_paper, algo, opts)
        check_plan_feasible(
            p, apps, profiles[model], prices_paper, may_split=algo == "mbs", formula="tightest"
        )
        # The tightest bound gives each group less waiting time than Eq. 5: never cheaper.
        eq5 = plan(apps, profiles[model], prices_paper, algo)
        if algo == "exact":
            assert eq5.cost_per_request <= p.cost_per_request * (1 + 1e-12)


@pytest.mark.slow
def test_dp_plans_1000_apps_quickly(profiles, prices_fc):
    apps = make_apps(1000, 7, "Bert")
    plan(apps[:10], profiles["Bert"], prices_fc)  # build the config table once
    start = time.perf_counter()
    p = plan(apps, profiles["Bert"], prices_fc, "dp")
    elapsed = time.perf_counter() - start
    print(f"dp, 1000 Bert apps: {elapsed:.3f} s, {len(p.groups)} groups")
    assert elapsed < 1.5
    check_plan_feasible(p, apps, profiles["Bert"], prices_fc)


def _contiguous_costs(apps: list[AppSpec], table, groups: list[list[int]]) -> float:
    from batchwise.planner.group import GroupSummary, best_row

    total = 0.0
    for g in groups:
        s = GroupSummary.of([apps[i].slo for i in g], [apps[i].rate for i in g])
        row = best_row(table, s)
        total += np.inf if row is None else s.rate * float(table.cost[row])
    return total


def test_dp_finds_the_cheapest_contiguous_partition_and_coarsening_stays_feasible(
    profiles, prices_fc
):
    """Brute force over all 2^(n-1) contiguous partitions; coarsened units never infeasible."""
    from itertools import combinations

    from batchwise.planner.dp import _contiguous_dp, unit_edges
    from batchwise.planner.table import build_table

    table = build_table(profiles["Bert"], prices_fc)
    apps = sorted(make_apps(9, 3, "Bert"), key=lambda a: (a.slo, a.name))
    best = min(
        _contiguous_costs(
            apps, table, [list(range(a, b)) for a, b in zip((0, *cuts), (*cuts, 9), strict=True)]
        )
        for k in range(9)
        for cuts in combinations(range(1, 9), k)
    )
    exact = _contiguous_dp(apps, table, "eq5", max_units=9)
    assert _contiguous_costs(apps, table, exact) == pytest.approx(best, rel=1e-12)
    coarse = _contiguous_dp(apps, table, "eq5", max_units=3)
    assert [i for g in coarse for i in g] == list(range(9))  # every app once, in order
    assert best <= _contiguous_costs(apps, table, coarse) < np.inf
    assert list(unit_edges(9, 3)) == [0, 3, 6, 9] and list(unit_edges(2, 3)) == [0, 1, 2]


def test_dp_coarsens_many_apps_into_feasible_groups(profiles, prices_fc):
    apps = make_apps(3000, 11, "VGG19")
    p = plan(apps, profiles["VGG19"], prices_fc, "dp")
    check_plan_feasible(p, apps, profiles["VGG19"], prices_fc)


# --- Errors --------------------------------------------------------------------------------


def test_unknown_algorithm_lists_the_choices():
    with pytest.raises(BatchwiseError, match="unknown algorithm 'greedy'; choose one of: dp, "):
        get_planner("greedy")
    assert get_planner("harmony").name == "harmony"


@pytest.mark.parametrize("algo", [a.value for a in Algorithm])
def test_impossible_slo_is_a_planning_error(algo, vgg19, prices_fc):
    apps = [AppSpec(name="fast", slo=0.001, rate=5), AppSpec(name="ok", slo=0.9, rate=5)]
    with pytest.raises(PlanningError) as exc:
        plan(apps, vgg19, prices_fc, algo)
    if algo != "exact":  # exact only reports that no grouping is feasible
        assert "'fast'" in str(exc.value) or "fast (slo" in str(exc.value)


@pytest.mark.parametrize("algo", [a.value for a in Algorithm])
def test_empty_and_duplicate_apps_are_rejected(algo, vgg19, prices_fc):
    with pytest.raises(PlanningError, match="no apps"):
        plan([], vgg19, prices_fc, algo)
    dup = [AppSpec(name="a", slo=0.5, rate=1), AppSpec(name="a", slo=0.6, rate=1)]
    with pytest.raises(PlanningError, match="unique"):
        plan(dup, vgg19, prices_fc, algo)


# --- MBS even split -------------------------------------------------------------------------


def test_even_split_cuts_the_rate_line(table1_apps):
    chunks = even_split(table1_apps, 2)
    # 35 req/s into two chunks of 17.5: app1 (5) + app2 (10) + 2.5 of app3 | 17.5 of app3.
    assert [[(a.name, r) for a, r in c] for c in chunks] == [
        [("app1", 5), ("app2", 10), ("app3", pytest.approx(2.5))],
        [("app3", pytest.approx(17.5))],
    ]
    for k in range(1, 6):
        chunks = even_split(table1_apps, k)
        assert len(chunks) == k
        for c in chunks:
            assert sum(r for _, r in c) == pytest.approx(35 / k)


# --- compare ----------------------------------------------------------------------------------


def test_compare_one_row_per_algorithm(vgg19, prices_fc, table1_apps):
    rows, plans = compare(table1_apps, vgg19, prices_fc)
    assert [r.algorithm for r in rows] == [a.value for a in Algorithm]
    by = {r.algorithm: r for r in rows}
    assert by["batch"].normalized_cost == pytest.approx(1.0)
    assert by["exact"].normalized_cost == pytest.approx(0.601, abs=0.005)
    assert by["batch"].slo_violations_predicted > 0
    for r in rows:
        assert r.error is None
        assert r.cost_per_request == pytest.approx(plans[r.algorithm].cost_per_request)
        assert r.groups == len(plans[r.algorithm].groups)
    assert rows_to_dicts(rows)[0]["algorithm"] == "dp"


def test_compare_skips_exact_on_big_instances(vgg19, prices_fc):
    apps = make_apps(13, 3, "VGG19")
    rows, plans = compare(apps, vgg19, prices_fc, ["dp", "exact"])
    assert "exact" not in plans
    assert rows[1].cost_per_request is None and "skipped" in rows[1].error
    assert rows[0].normalized_cost is None  # no batch baseline was run


# --- The feasibility checker itself can fail ------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        lambda g: {"timeouts": {a: t + 0.05 for a, t in g.timeouts.items()}},  # SLO broken
        lambda g: {"batch_size": g.batch_size + 3},  # unreachable batch
        lambda g: {"rates": {a: r * 0.9 for a, r in g.rates.items()}},  # rate not covered
        lambda g: {"cost_per_request": g.cost_per_request * 1.01},  # cost off the model
        lambda g: {"function": g.function.model_copy(update={"gpu_memory_gb": 1})},  # < 2 GB
    ],
)
def test_feasibility_checker_catches_tampering(tamper, vgg19, prices_fc, table1_apps):
    p = plan(table1_apps, vgg19, prices_fc, "dp")
    check_plan_feasible(p, table1_apps, vgg19, prices_fc)
    gpu = next(i for i, g in enumerate(p.groups) if g.function.kind == "gpu")
    p.groups[gpu] = p.groups[gpu].model_copy(update=tamper(p.groups[gpu]))
    with pytest.raises(AssertionError):
        check_plan_feasible(p, table1_apps, vgg19, prices_fc)


def test_planners_with_fast_growing_search_refuse_too_many_apps(vgg19, prices_fc):
    apps = make_apps(501, 0, "VGG19")
    with pytest.raises(PlanningError, match="'mbs' plans at most 500 apps"):
        plan(apps, vgg19, prices_fc, "mbs")
    rows, plans = compare(apps, vgg19, prices_fc, ["dp", "mbs"])
    assert rows[1].error == "skipped: more than 500 apps" and "mbs" not in plans
    assert rows[0].cost_per_request is not None
