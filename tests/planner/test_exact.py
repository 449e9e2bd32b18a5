"""The exact planner: brute force agrees with it, nothing beats it, dp stays close."""

from __future__ import annotations

import numpy as np
import pytest

from batchwise.errors import PlanningError
from batchwise.planner import EXACT_MAX_APPS, Algorithm, PlannerOptions, plan
from batchwise.planner.group import GroupSummary, best_row
from batchwise.planner.table import build_table
from utils import MODELS, check_plan_feasible, make_apps

FULL_BATCH = PlannerOptions(objective="full-batch")
"""Optimality here is the paper's full-batch cost (the default objective re-provisions)."""

REL = 1e-12


def set_partitions(items: list[int]):
    """Every partition of ``items`` into non-empty blocks (Bell(n) of them)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]


def test_set_partitions_counts_bell_numbers():
    assert [sum(1 for _ in set_partitions(list(range(n)))) for n in range(1, 7)] == [
        1,
        2,
        5,
        15,
        52,
        203,
    ]


@pytest.mark.parametrize("seed", range(8))
def test_exact_matches_brute_force_over_all_partitions(seed, profiles, prices_fc):
    model = MODELS[seed % 4]
    apps = make_apps(5, 200 + seed, model)
    table = build_table(profiles[model], prices_fc)
    best = np.inf
    for part in set_partitions(list(range(len(apps)))):
        total = 0.0
        for block in part:
            g = GroupSummary.of([apps[i].slo for i in block], [apps[i].rate for i in block])
            row = best_row(table, g)
            total += np.inf if row is None else g.rate * float(table.cost[row])
        best = min(best, total)
    got = plan(apps, profiles[model], prices_fc, "exact", FULL_BATCH)
    assert got.cost_per_request * sum(a.rate for a in apps) == pytest.approx(best, rel=1e-12)


EXACT_INSTANCES = [(seed, MODELS[seed % 4], 2 + seed % 6) for seed in range(40)]
"""(seed, model, n): 40 instances, n in 2..7, ten per model."""


@pytest.fixture(scope="module")
def exact_runs(profiles, prices_fc):
    """Every planner on every instance: {(seed, model, n): {algorithm: Plan}}."""
    runs = {}
    for seed, model, n in EXACT_INSTANCES:
        apps = make_apps(n, 300 + seed, model)
        plans = {}
        for algo in Algorithm:
            try:
                plans[algo.value] = plan(apps, profiles[model], prices_fc, algo, FULL_BATCH)
            except PlanningError:
                assert algo in (Algorithm.CPU_ONLY, Algorithm.GPU_ONLY)
        runs[seed, model, n] = (apps, plans)
    return runs


def test_exact_is_never_beaten(exact_runs, profiles, prices_fc):
    compared: dict[str, int] = {}
    for (_, model, _), (apps, plans) in exact_runs.items():
        exact = plans["exact"]
        check_plan_feasible(exact, apps, profiles[model], prices_fc)
        for name, p in plans.items():
            if name == "batch":
                continue  # budgets with L_avg, so its plans are infeasible (see test_planners)
            if sum(len(g.apps) for g in p.groups) > len(apps):
                assert name == "mbs"
                continue  # MBS split an app across groups: outside the space of partitions
            compared[name] = compared.get(name, 0) + 1
            assert exact.cost_per_request <= p.cost_per_request * (1 + REL), (model, name)
    # Every other planner was actually compared, MBS on the instances it did not split.
    assert set(compared) == {a.value for a in Algorithm} - {"batch"}
    assert compared["mbs"] >= 10 and compared["dp"] == len(exact_runs)


def test_dp_is_within_one_percent_of_exact_on_average(exact_runs):
    gaps = [
        plans["dp"].cost_per_request / plans["exact"].cost_per_request
        for _, plans in exact_runs.values()
    ]
    assert len(gaps) >= 30
    mean = float(np.mean(gaps))
    print(f"dp / exact over {len(gaps)} instances: mean {mean:.5f}, worst {max(gaps):.5f}")
    assert min(gaps) >= 1 - REL
    assert mean <= 1.01


def test_exact_on_table1(vgg19, prices_fc, table1_apps):
    p = plan(table1_apps, vgg19, prices_fc, "exact")
    assert [g.apps for g in p.groups] == [["app1"], ["app2", "app3"]]
    assert [g.function.kind for g in p.groups] == ["cpu", "gpu"]
    assert p.groups[1].function.gpu_memory_gb == 2


def test_exact_refuses_big_instances(vgg19, prices_fc):
    apps = make_apps(EXACT_MAX_APPS + 1, 0, "VGG19")
    with pytest.raises(PlanningError, match=f"at most {EXACT_MAX_APPS} apps"):
        plan(apps, vgg19, prices_fc, "exact")


def test_exact_names_the_app_whose_slo_no_function_meets(vgg19, prices_fc):
    from batchwise.config.apps import AppSpec

    apps = [AppSpec(name="ok", slo=0.5, rate=1), AppSpec(name="impossible", slo=0.001, rate=1)]
    with pytest.raises(PlanningError, match="impossible"):
        plan(apps, vgg19, prices_fc, Algorithm.EXACT)
