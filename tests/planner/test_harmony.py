"""HarmonyBatch: Theorem 1/2 provisioning and the two-stage merge."""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchwise.planner import plan
from batchwise.planner.group import GroupSummary, best_row, best_rows_batched, feasible_mask
from batchwise.planner.harmony import TheoremProvisioner, _interior_min_vcpu
from batchwise.planner.table import build_table
from utils import MODELS, check_plan_feasible, make_apps


def test_table1_harmony_plan(vgg19, prices_fc, table1_apps):
    p = plan(table1_apps, vgg19, prices_fc, "harmony")
    assert [g.apps for g in p.groups] == [["app1"], ["app2", "app3"]]
    cpu, gpu = p.groups
    # app1 alone on a CPU function with batch 1 (the paper: 1.6 vCPU).
    assert cpu.function.kind == "cpu" and cpu.batch_size == 1
    assert cpu.function.vcpu == pytest.approx(1.6)
    # app2 + app3 on a 2 GB GPU function (the paper: b13; Eq. 5 reaches 14 here).
    assert gpu.function.kind == "gpu" and gpu.function.gpu_memory_gb == 2
    assert gpu.batch_size in (13, 14)
    batch = plan(table1_apps, vgg19, prices_fc, "batch")
    assert p.cost_per_request / batch.cost_per_request == pytest.approx(0.60, abs=0.04)


def test_interior_minimum_of_c_times_latency(vgg19, videomae):
    alpha, beta, gamma = vgg19.cpu.avg[0]
    c = _interior_min_vcpu(vgg19.cpu, 1, 16.0)
    assert c is not None and c > 2 * beta
    # d/dc [c L(c)] = alpha (1 - c/beta) e^{-c/beta} + gamma = 0 at the minimum.
    assert alpha * (1 - c / beta) * math.exp(-c / beta) + gamma == pytest.approx(0, abs=1e-9)
    grid = np.linspace(2 * beta, 16.0, 20_001)
    cost = grid * (alpha * np.exp(-grid / beta) + gamma)
    assert c == pytest.approx(grid[np.argmin(cost)], abs=1e-3)
    # VideoMAE's c L(c) is monotone (gamma is large): no interior minimum.
    assert _interior_min_vcpu(videomae.cpu, 1, 16.0) is None


@pytest.mark.parametrize("model", MODELS)
def test_theorem_provisioning_is_feasible_and_never_beats_the_grid(model, profiles, prices_fc):
    table = build_table(profiles[model], prices_fc)
    prov = TheoremProvisioner(profiles[model], prices_fc, table)
    ratios = []
    for seed in range(40):
        apps = make_apps(1 + seed % 4, seed, model)
        g = GroupSummary.of([a.slo for a in apps], [a.rate for a in apps])
        exact = best_row(table, g)
        row = prov.provision(g)
        assert (row is None) == (exact is None)
        if row is None:
            continue
        assert feasible_mask(table, g)[row]
        ratios.append(table.cost[row] / table.cost[exact])
    assert min(ratios) >= 1 - 1e-12
    assert np.median(ratios) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("model", MODELS)
def test_batched_provisioning_equals_exhaustive(model, profiles, prices_fc):
    table = build_table(profiles[model], prices_fc)
    groups = [
        GroupSummary.of([a.slo for a in apps], [a.rate for a in apps])
        for apps in (make_apps(1 + s % 5, 500 + s, model) for s in range(60))
    ]
    cost, rows = best_rows_batched(
        table,
        np.array([g.s1 for g in groups]),
        np.array([g.rate for g in groups]),
        np.array([g.t0 for g in groups]),
    )
    for g, c, r in zip(groups, cost, rows, strict=True):
        exact = best_row(table, g)
        if exact is None:
            assert r == -1 and np.isinf(c)
        else:
            assert c == pytest.approx(table.cost[exact], rel=1e-12)
            assert feasible_mask(table, g)[r]


@pytest.mark.parametrize("seed", range(12))
def test_harmony_merges_only_slo_neighbours(seed, profiles, prices_fc):
    model = MODELS[seed % 4]
    apps = make_apps(8, 600 + seed, model)
    p = plan(apps, profiles[model], prices_fc, "harmony")
    check_plan_feasible(p, apps, profiles[model], prices_fc)
    order = [a.name for a in sorted(apps, key=lambda a: (a.slo, a.name))]
    pos = {name: i for i, name in enumerate(order)}
    for g in p.groups:
        idx = sorted(pos[a] for a in g.apps)
        assert idx == list(range(idx[0], idx[-1] + 1)), g.apps  # contiguous in SLO order
    # Never worse than serving each app alone, never better than the optimum.
    alone = plan(apps, profiles[model], prices_fc, "per-app")
    exact = plan(apps, profiles[model], prices_fc, "exact")
    assert exact.cost_per_request <= p.cost_per_request * (1 + 1e-12)
    assert p.cost_per_request <= alone.cost_per_request * 1.01
