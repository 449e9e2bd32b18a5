"""Planner objective: full-batch vs expected, each plan *simulated* on the same trace.

Usage: python bench/objective.py [--json] [--sim-seconds 300] [--seeds 3]

Why: part 8 of the serving issue makes ``--objective expected`` the default only if
it is cheaper when simulated, not just when predicted. For every workload (2 price books x
4 models x 3 rate mixes x seeds, the paper's 8-app SLO ladders) both objectives plan
with ``dp``; both plans are simulated on the
same Poisson trace (same seed) in the serverless mode; the table reports the simulated
cost per request of ``expected`` relative to ``full-batch`` and both SLO violation
rates. Deterministic (seeded).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from batchwise.config.prices import BUILTIN_PRICE_BOOKS
from batchwise.config.profiles import builtin_profiles
from batchwise.errors import PlanningError
from batchwise.planner import PlannerOptions, plan
from batchwise.sim.serving import simulate
from batchwise.traces.sources import poisson
from common import MODEL_SLOS, RATE_MIXES, eight_apps, markdown, median

OBJECTIVES = ("full-batch", "expected")
PRICE_BOOKS = ("alibaba-fc-2023", "paper-eq6")


def one(prices_name: str, model: str, mix: str, seed: int, sim_seconds: float) -> dict | None:
    prof = builtin_profiles()[model]
    prices = BUILTIN_PRICE_BOOKS[prices_name]
    apps = eight_apps(model, mix, seed)
    trace = poisson({a.name: a.rate for a in apps}, sim_seconds, seed=seed)
    row: dict = {"prices": prices_name, "model": model, "mix": mix, "seed": seed}
    for objective in OBJECTIVES:
        try:
            p = plan(apps, prof, prices, "dp", PlannerOptions(objective=objective))
        except PlanningError:
            return None
        sim = simulate(p, trace, prof, prices, seed=seed)
        row[objective] = {
            "predicted_full_batch": p.cost_per_request,
            "predicted_expected": p.expected_cost_per_request,
            "simulated_cost": sim.cost_per_request,
            "slo_violation_rate": sim.slo_violation_rate,
        }
    row["simulated_ratio"] = row["expected"]["simulated_cost"] / row["full-batch"]["simulated_cost"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--sim-seconds", type=float, default=300.0, help="simulated seconds per run")
    ap.add_argument("--seeds", type=int, default=3, help="random rate draws per (model, mix)")
    args = ap.parse_args()
    cases = [(b, m, x, s) for b in PRICE_BOOKS for m in MODEL_SLOS for x in RATE_MIXES
             for s in range(args.seeds)]  # fmt: skip
    rows = []
    for done, case in enumerate(cases, start=1):
        r = one(*case, args.sim_seconds)
        if r is not None:
            rows.append(r)
        print(f"  [{done}/{len(cases)}] {' '.join(map(str, case))}", file=sys.stderr)
    ratios = [r["simulated_ratio"] for r in rows]
    worse_slo = [
        r for r in rows
        if r["expected"]["slo_violation_rate"] > r["full-batch"]["slo_violation_rate"] + 0.005
    ]  # fmt: skip
    summary = {
        "workloads": len(rows),
        "median_ratio": median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "cheaper": sum(x < 1 - 1e-9 for x in ratios),
        "dearer": sum(x > 1 + 1e-9 for x in ratios),
        "slo_worse_by_over_0_5_points": len(worse_slo),
    }
    if args.json:
        print(json.dumps({"summary": summary, "rows": rows}, indent=2))
        return
    table = []
    for book, model, mix in {c[:3]: None for c in cases}:
        sel = [r for r in rows if (r["prices"], r["model"], r["mix"]) == (book, model, mix)]
        if not sel:
            table.append([book, model, mix, "infeasible", "", ""])
            continue
        table.append([
            book, model, mix, f"{median([r['simulated_ratio'] for r in sel]):.3f}",
            " / ".join(f"{r['full-batch']['slo_violation_rate'] * 100:.2f}" for r in sel),
            " / ".join(f"{r['expected']['slo_violation_rate'] * 100:.2f}" for r in sel),
        ])  # fmt: skip
    print("\n### Simulated cost per request, expected / full-batch (median over seeds)\n")
    headers = ["prices", "model", "rates", "expected / full-batch",
               "SLO violations % full-batch", "SLO violations % expected"]  # fmt: skip
    print(markdown(headers, table))
    print(f"\n{json.dumps(summary)}")


if __name__ == "__main__":
    main()
