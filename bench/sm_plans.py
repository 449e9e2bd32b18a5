"""SM-share GPU functions in cost plans: plan costs with and without the ``gpu-sm`` kind.

Usage: python bench/sm_plans.py [--json] [--seeds 3] [--sim-seconds 120] [--sm-price-share 0.5]

The foundation workloads (4 models × 8 apps × rate mixes low/mixed/high, as
``bench/planner_costs.py``) are planned three ways under the same prices
(``alibaba-fc-2023-sm``: the FC 2023 book plus SM shares, the whole GPU costing what
all its memory slices cost, half for SMs and half for memory):

* ``memory`` — CPU and memory-slice GPU functions only (the paper's model);
* ``sm`` — CPU and SM-share GPU functions only;
* ``both`` — every kind; the planner picks per group.

``--sm-price-share w`` re-splits the whole GPU's price: ``w`` for its SMs, ``1 − w`` for
its memory (the built-in book has 0.5), to show how far the conclusions rest on it.
Figures are the plans' expected cost per request relative to ``memory`` (medians over
seeds), which groups went to which kind, and the SLO violations of the ``both`` plan
replayed under Poisson arrivals in the simulator.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from batchwise.config.prices import PriceBook, load_prices
from batchwise.config.profiles import builtin_profiles
from batchwise.errors import PlanningError
from batchwise.planner.base import PlannerOptions
from batchwise.planner.dp import DPPlanner
from batchwise.sim.serving import simulate
from batchwise.traces.sources import poisson
from common import MODEL_SLOS, RATE_MIXES, eight_apps, markdown

PRICES = "alibaba-fc-2023-sm"
WAYS = {"memory": ("cpu", "gpu"), "sm": ("cpu", "gpu-sm"), "both": ("cpu", "gpu", "gpu-sm")}


def book(sm_price_share: float) -> PriceBook:
    """The built-in SM book with the whole GPU's price split ``w : 1 − w`` (SMs : memory)."""
    base = load_prices(PRICES)
    whole = base.gpu_memory_gb_max * base.gpu_memory_per_gb_s
    return base.model_copy(update={
        "gpu_sm_per_s": sm_price_share * whole,
        "gpu_sm_memory_per_gb_s": (1 - sm_price_share) * whole / base.gpu_memory_gb_max,
    })  # fmt: skip


def run(seeds: int, sim_seconds: float, sm_price_share: float) -> dict[str, dict[str, dict]]:
    prices = book(sm_price_share)
    profiles = builtin_profiles()
    out: dict[str, dict[str, dict]] = {}
    for model in MODEL_SLOS:
        prof = profiles[model]
        out[model] = {}
        for mix in RATE_MIXES:
            ratios: dict[str, list[float]] = {w: [] for w in WAYS}
            kinds: Counter[str] = Counter()
            violations = []
            for seed in range(seeds):
                apps = eight_apps(model, mix, seed)
                plans = {}
                for way, ks in WAYS.items():
                    try:
                        plans[way] = DPPlanner(way, kinds=ks).plan(apps, prof, prices,
                                                                   PlannerOptions())  # fmt: skip
                    except PlanningError:
                        plans[way] = None
                base = plans["memory"]
                for way, p in plans.items():
                    if p is not None and base is not None:
                        ratios[way].append(p.expected_cost_per_request
                                           / base.expected_cost_per_request)  # fmt: skip
                both = plans["both"]
                if both is not None:
                    kinds.update(g.function.kind for g in both.groups)
                    trace = poisson({a.name: a.rate for a in apps}, sim_seconds, seed=seed)
                    violations.append(simulate(both, trace, prof, prices, seed=seed)
                                      .slo_violation_rate)  # fmt: skip
                print(f"{model} {mix} seed {seed}", file=sys.stderr)
            out[model][mix] = {
                "ratio": {w: statistics.median(r) if r else None for w, r in ratios.items()},
                "groups_by_kind": dict(kinds),
                "both_slo_violation_rate": max(violations) if violations else None,
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sim-seconds", type=float, default=120.0)
    ap.add_argument("--sm-price-share", type=float, default=0.5)
    args = ap.parse_args()
    out = run(args.seeds, args.sim_seconds, args.sm_price_share)
    if args.json:
        print(json.dumps({"prices": PRICES, "sm_price_share": args.sm_price_share,
                          "seeds": args.seeds, "models": out}, indent=2))  # fmt: skip
        return
    headers = ["model", "mix", "sm ÷ memory", "both ÷ memory", "groups (both)",
               "worst SLO viol (both, sim)"]  # fmt: skip
    rows = []
    for model, mixes in out.items():
        for mix, d in mixes.items():
            r = d["ratio"]
            fmt = {w: "n/a" if r[w] is None else f"{r[w]:.3f}" for w in r}
            groups = ", ".join(f"{k} {n}" for k, n in sorted(d["groups_by_kind"].items()))
            v = d["both_slo_violation_rate"]
            rows.append([model, mix, fmt["sm"], fmt["both"], groups,
                         "n/a" if v is None else f"{v:.2%}"])  # fmt: skip
    print(markdown(headers, rows))


if __name__ == "__main__":
    main()
