"""Planner cost benchmark: Table I (both cost variants) and 4 models x 8 apps x rate mixes.

Usage: python bench/planner_costs.py [--json] [--sim-seconds 300] [--seeds 3]

Prints markdown tables (paste into bench/RESULTS.md) or one JSON object.
Costs are full-batch cost per request (Eq. 6) relative to a reference planner;
simulated SLO violations come from replaying Poisson arrivals through the plan
with the same batching policy the gateway uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from batchwise.config.apps import AppSpec
from batchwise.config.prices import BUILTIN_PRICE_BOOKS
from batchwise.config.profiles import builtin_profiles
from batchwise.errors import PlanningError
from batchwise.perf.cost import batch_cost
from batchwise.perf.functions import cpu_function, gpu_function
from batchwise.perf.latency import LatencyModel
from batchwise.planner import Algorithm, PlannerOptions, plan
from batchwise.sim.serving import simulate
from batchwise.traces.sources import poisson
from common import MODEL_SLOS, RATE_MIXES, eight_apps, markdown

TABLE1 = [
    AppSpec(name="app1", slo=0.5, rate=5),
    AppSpec(name="app2", slo=0.8, rate=10),
    AppSpec(name="app3", slo=1.0, rate=20),
]
PAPER_TABLE1 = {"batch": 1.00, "mbs": 0.88, "harmony": 0.63}
FULL_BATCH = PlannerOptions(objective="full-batch")
"""The paper's objective: these tables compare planners on it (bench/objective.py: the other)."""


def paper_plans_cost(prices_name: str) -> dict[str, float]:
    """The paper's printed Table I plans, costed with our model (normalised to BATCH)."""
    prof = builtin_profiles()["VGG19"]
    prices = BUILTIN_PRICE_BOOKS[prices_name]
    lm = LatencyModel(prof.cpu, prof.gpu)

    def cpu(c: float, b: int) -> float:
        fn = cpu_function(prof, b, c, prices)
        return batch_cost(fn, lm.avg(fn, b), prices) / b

    def gpu(m: int, b: int) -> float:
        fn = gpu_function(prof, m, prices)
        return batch_cost(fn, lm.avg(fn, b), prices) / b

    batch = (5 * cpu(1.55, 1) + 10 * cpu(1.5, 2) + 20 * cpu(1.5, 2)) / 35
    harmony = (5 * cpu(1.6, 1) + 30 * gpu(2, 13)) / 35
    mbs = (17.5 * cpu(1.6, 1) + 17.5 * gpu(2, 11)) / 35
    return {"batch": 1.0, "mbs": mbs / batch, "harmony": harmony / batch}


def table1(sim_seconds: float) -> dict:
    prof = builtin_profiles()["VGG19"]
    out: dict = {}
    for prices_name in ("alibaba-fc-2023", "paper-eq6"):
        prices = BUILTIN_PRICE_BOOKS[prices_name]
        plans = {a.value: plan(TABLE1, prof, prices, a, FULL_BATCH) for a in Algorithm}
        base = plans["batch"].cost_per_request
        trace = poisson({a.name: a.rate for a in TABLE1}, sim_seconds, seed=1)
        rows = {}
        for name, p in plans.items():
            sim = simulate(p, trace, prof, prices, seed=1)
            rows[name] = {
                "normalized_cost": p.cost_per_request / base,
                "groups": [
                    f"{'+'.join(g.apps)}:{g.function.kind}"
                    f"{g.function.vcpu if g.function.kind == 'cpu' else g.function.gpu_memory_gb}"
                    f"/b{g.batch_size}"
                    for g in p.groups
                ],
                "sim_cost_normalized": sim.cost_per_request / base,
                "sim_slo_violation_rate": sim.slo_violation_rate,
            }
        out[prices_name] = {"rows": rows, "paper_plans": paper_plans_cost(prices_name)}
    return out


def grid(seeds: int, sim_seconds: float) -> list[dict]:
    profiles = builtin_profiles()
    prices = BUILTIN_PRICE_BOOKS["alibaba-fc-2023"]
    results = []
    total = len(MODEL_SLOS) * len(RATE_MIXES) * seeds
    done = 0
    for model in MODEL_SLOS:
        prof = profiles[model]
        for mix in RATE_MIXES:
            for seed in range(seeds):
                apps = eight_apps(model, mix, seed)
                plans = {}
                for a in Algorithm:
                    try:
                        plans[a.value] = plan(apps, prof, prices, a, FULL_BATCH)
                    except PlanningError:
                        plans[a.value] = None  # e.g. cpu-only cannot meet a 1 s SLO
                exact = plans["exact"].cost_per_request
                trace = poisson({a.name: a.rate for a in apps}, sim_seconds, seed=seed)
                for name, p in plans.items():
                    if p is None:
                        results.append(
                            {
                                "model": model,
                                "mix": mix,
                                "seed": seed,
                                "algorithm": name,
                                "infeasible": True,
                            }
                        )
                        continue
                    sim = simulate(p, trace, prof, prices, seed=seed)
                    results.append({
                        "model": model, "mix": mix, "seed": seed, "algorithm": name,
                        "cost_vs_exact": p.cost_per_request / exact,
                        "sim_slo_violation_rate": sim.slo_violation_rate,
                        "sim_cost_vs_predicted": sim.cost_per_request / p.expected_cost_per_request,
                    })  # fmt: skip
                done += 1
                print(f"  [{done}/{total}] {model} {mix} seed {seed}", file=sys.stderr)
    return results


def summarize(results: list[dict]) -> list[list[object]]:
    rows = []
    algos = [a.value for a in Algorithm]
    for model in MODEL_SLOS:
        for mix in RATE_MIXES:
            row: list[object] = [model, mix]
            for a in algos:
                sel = [
                    r
                    for r in results
                    if r["model"] == model and r["mix"] == mix and r["algorithm"] == a
                ]
                if any(r.get("infeasible") for r in sel):
                    row.append("infeasible")
                    continue
                cost = sum(r["cost_vs_exact"] for r in sel) / len(sel)
                viol = sum(r["sim_slo_violation_rate"] for r in sel) / len(sel)
                row.append(f"{cost:.3f} ({viol * 100:.1f}%)")
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--sim-seconds", type=float, default=300.0, help="simulated seconds per run")
    ap.add_argument("--seeds", type=int, default=3, help="random rate draws per (model, mix)")
    args = ap.parse_args()
    t1 = table1(args.sim_seconds)
    g = grid(args.seeds, args.sim_seconds)
    if args.json:
        print(json.dumps({"table1": t1, "grid": g}, indent=2))
        return
    for prices_name, res in t1.items():
        print(f"\n### Table I (VGG-19), prices {prices_name}\n")
        rows = []
        for name, r in res["rows"].items():
            paper = PAPER_TABLE1.get(name, "")
            printed = res["paper_plans"].get(name)
            rows.append([
                name, f"{r['normalized_cost']:.3f}", paper,
                f"{printed:.3f}" if printed is not None else "", " ".join(r["groups"]),
                f"{r['sim_cost_normalized']:.3f}", f"{r['sim_slo_violation_rate'] * 100:.2f}%",
            ])  # fmt: skip
        print(markdown(
            ["planner", "cost / batch", "paper", "paper's plan, our model", "groups",
             "simulated cost / batch", "simulated SLO violations"], rows))  # fmt: skip
    print("\n### 4 models x 8 apps: cost / exact (simulated SLO violation rate), mean over seeds\n")
    print(markdown(["model", "rates", *[a.value for a in Algorithm]], summarize(g)))
    dp = [r["cost_vs_exact"] for r in g if r["algorithm"] == "dp"]
    hm = [r["cost_vs_exact"] for r in g if r["algorithm"] == "harmony"]
    mb = [r["cost_vs_exact"] for r in g if r["algorithm"] == "mbs"]
    print(f"\ndp / exact: mean {sum(dp) / len(dp):.4f}, max {max(dp):.4f} over {len(dp)} instances")
    print(f"harmony / exact: mean {sum(hm) / len(hm):.4f}, max {max(hm):.4f}")
    print(f"mbs / exact: mean {sum(mb) / len(mb):.4f}, max {max(mb):.4f}")


if __name__ == "__main__":
    main()
