"""GPU co-scaling (Dilu): every mode on every shipped RPS trace, medians over seeds.

Usage: python bench/gpu_coscale.py [--json] [--seeds 3] [--peak-loads 1.0,1.5]
                                   [--interference 0.5] [--plot DIR]

The function is ResNet152 sized by the pruning search at QoS 0.04 s (30 % SM, batch 16;
limit 60 %, request SLO 0.08 s) with a RoBERTa-large co-runner at batch 32 (request
70 %, limit 90 %) on every GPU it holds, exactly as ``batchwise gpu coscale`` sets it
up (:func:`batchwise.gpu.coscale_command.make_setup`). Each trace
(``../shared/data/dilu/rps/{bursty,periodic,sporadic}.txt``) is scaled so that its
busiest second is ``peak-load`` × one instance's rate at its request; each seed draws
new Poisson arrivals, the same for every mode. Figures are medians over the seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from batchwise.gpu.coscale_command import make_setup, plot_timeline, run_modes
from batchwise.gpu.latency_grid import LatencyGrid
from batchwise.sim.gpu_serving import Mode
from batchwise.traces.loaders import load_rps
from common import markdown

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dilu"
TRACES = ("bursty", "periodic", "sporadic")
GRID, CORUNNER = DATA / "profiles" / "resnet152.csv", DATA / "profiles" / "roberta_large.csv"
QOS_S = 0.04
FIELDS = ("qos_violation_rate", "p99_latency_s", "inference_throughput",
          "corunner_gpu_equivalents", "device_seconds", "net_device_seconds", "peak_instances",
          "emergencies")  # fmt: skip


def run(peak_load: float, seeds: int, interference: float, plot: Path | None) -> dict[str, Any]:
    fn, co = LatencyGrid.from_csv(GRID), LatencyGrid.from_csv(CORUNNER)
    setup, search = make_setup(fn, GRID, QOS_S, co, 32, None, None, interference, 5.0, 64)
    out: dict[str, Any] = {}
    for name in TRACES:
        rates = load_rps(DATA / "rps" / f"{name}.txt")
        scale = peak_load * setup.grid.throughput(setup.batch_size, setup.request) / rates.max()
        per_seed = []
        for seed in range(seeds):
            print(f"{name} peak {peak_load:g} seed {seed}", file=sys.stderr)
            results = run_modes(setup, list(Mode), rates * scale, seed)
            per_seed.append({m: r.to_dict() for m, r in results.items()})
            if plot is not None and seed == 0:
                plot_timeline(results, plot / f"coscale-{name}-peak{peak_load:g}.png", name)
        out[name] = {m: {f: statistics.median(s[m][f] for s in per_seed) for f in FIELDS}
                     for m in per_seed[0]}  # fmt: skip
    return {"function": search, "peak_load": peak_load, "traces": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--peak-loads", default="1.0,1.5")
    ap.add_argument("--interference", type=float, default=0.5)
    ap.add_argument("--plot", type=Path, default=None, help="write one PNG per trace here")
    args = ap.parse_args()
    if args.plot is not None:
        args.plot.mkdir(parents=True, exist_ok=True)
    runs = [run(float(p), args.seeds, args.interference, args.plot)
            for p in args.peak_loads.split(",")]  # fmt: skip
    if args.json:
        print(json.dumps({"seeds": args.seeds, "interference": args.interference, "runs": runs},
                         indent=2))  # fmt: skip
        return
    headers = ["peak load", "trace", "mode", "QoS viol", "p99 s", "co-runner GPU-eq",
               "device-s", "net device-s", "peak inst", "emergencies"]  # fmt: skip
    rows = []
    for r in runs:
        for trace, modes in r["traces"].items():
            for mode, d in modes.items():
                rows.append([f"{r['peak_load']:g}", trace, mode, f"{d['qos_violation_rate']:.2%}",
                             f"{d['p99_latency_s']:.3f}", f"{d['corunner_gpu_equivalents']:.3f}",
                             f"{d['device_seconds']:.0f}", f"{d['net_device_seconds']:.0f}",
                             f"{d['peak_instances']:g}", f"{d['emergencies']:g}"])  # fmt: skip
    print(markdown(headers, rows))


if __name__ == "__main__":
    main()
