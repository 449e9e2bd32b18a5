"""Planning time for 1, 12, 100, 1000 and 10 000 apps: every planner, median over repeats.

Usage: python bench/planning_time.py [--json] [--repeats 5]

`exact` runs only up to 12 apps (O(3^n)); `mbs` only up to 100 apps (it provisions
O(n^2) groups); `harmony` (the paper's greedy merge, O(n^2)) up to 1000.
Random VGG-19 apps: SLOs U(0.3, 1.0) s, rates lognormal(0, 1) req/s. Times are
from cold: the configuration table (built once per model and price book, then
cached) is rebuilt for every run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from batchwise.clock import Stopwatch
from batchwise.config.prices import load_prices
from batchwise.config.profiles import builtin_profiles
from batchwise.planner import Algorithm, plan
from batchwise.planner.table import clear_table_cache
from common import markdown, median, random_apps

SIZES = (1, 12, 100, 1000, 10000)
LIMITS = {"exact": 12, "mbs": 100, "harmony": 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    prof = builtin_profiles()["VGG19"]
    prices = load_prices(None)
    results: dict[str, dict[int, dict]] = {}
    for algo in Algorithm:
        results[algo.value] = {}
        for n in SIZES:
            if n > LIMITS.get(algo.value, 10**9):
                continue
            times, costs = [], []
            for rep in range(args.repeats):
                apps = random_apps(n, seed=rep)
                clear_table_cache()  # time from cold: the config table is built each time
                watch = Stopwatch()
                p = plan(apps, prof, prices, algo)
                times.append(watch.elapsed_s())
                costs.append(p.cost_per_request)
            results[algo.value][n] = {
                "median_s": median(times),
                "max_s": max(times),
                "mean_cost": sum(costs) / len(costs),
            }
            print(f"  {algo.value} n={n}: {median(times) * 1000:.1f} ms", file=sys.stderr)
    if args.json:
        print(json.dumps({"sizes": SIZES, "results": results}, indent=2))
        return
    rows = []
    for algo, by_n in results.items():
        rows.append(
            [algo, *[f"{by_n[n]['median_s'] * 1000:.1f}" if n in by_n else "-" for n in SIZES]]
        )
    print("\n### Planning time (ms, median of", args.repeats, "random instances)\n")
    print(markdown(["planner", *[f"{n} apps" for n in SIZES]], rows))
    dp = results["dp"]
    rows = [
        [n, f"{dp[n]['mean_cost'] / results['harmony'][n]['mean_cost']:.3f}"]
        for n in SIZES
        if n in results["harmony"]
    ]
    print("\n### dp cost / harmony cost (mean over the same instances)\n")
    print(markdown(["apps", "dp / harmony"], rows))


if __name__ == "__main__":
    main()
