"""Fit the SM-share latency law of the ``gpu-sm`` function kind to the Dilu grids.

Usage: python bench/sm_saturation.py [--json]

The ``gpu-sm`` kind (:mod:`batchwise.perf.kinds`) times a batch of ``b`` at SM share
``s`` as ``L0(b) × max(1, σ(b) / s)`` with ``σ(b) = min(1, σ1 × b^g)``: a batch runs as
fast as on the whole device until its share drops below the SMs it can keep busy,
then slows in proportion. This script fits ``(σ1, g)`` per model by least squares on
log latency over each grid's shares (10–100 %) and batches (1–32), and once over all
models together; the pooled fit is the kind's default for profiles that give none.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from batchwise.gpu.measure import load_grid

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dilu" / "profiles"
MODELS = ("resnet152", "bert_base", "roberta_large", "gpt2_large", "llama2")


def _rows(model: str) -> list[tuple[int, float, float]]:
    """(batch, share, latency ÷ full-device latency) of every grid point."""
    pts = load_grid(DATA / f"{model}.csv")
    top = max(s for _, s in pts)
    return [(b, s / 100, m.latency_s / pts[(b, top)].latency_s) for (b, s), m in pts.items()]


def fit(rows: list[tuple[int, float, float]]) -> tuple[float, float, float]:
    """(σ1, g, rms log error) by grid search (the law is not smooth in its parameters)."""
    b = np.array([r[0] for r in rows], dtype=float)
    s = np.array([r[1] for r in rows])
    y = np.log(np.array([r[2] for r in rows]))
    best = (math.inf, 0.0, 0.0)
    for s1 in np.arange(0.02, 1.0001, 0.005):
        for g in np.arange(0.0, 1.0001, 0.01):
            sigma = np.minimum(1.0, s1 * b**g)
            err = float(np.mean((np.log(np.maximum(1.0, sigma / s)) - y) ** 2))
            if err < best[0]:
                best = (err, float(s1), float(g))
    return best[1], best[2], math.sqrt(best[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = {}
    pooled: list[tuple[int, float, float]] = []
    for m in MODELS:
        rows = _rows(m)
        pooled += rows
        s1, g, err = fit(rows)
        out[m] = {"sigma1": round(s1, 3), "growth": round(g, 2), "rms_log_error": round(err, 3)}
    s1, g, err = fit(pooled)
    out["pooled"] = {"sigma1": round(s1, 3), "growth": round(g, 2), "rms_log_error": round(err, 3)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print("| model | σ1 | growth | rms log error |\n|---|---|---|---|")
    for m, d in out.items():
        print(f"| {m} | {d['sigma1']} | {d['growth']} | {d['rms_log_error']} |")


if __name__ == "__main__":
    main()
