"""Shared helpers for the benchmark scripts (workloads, medians, markdown tables)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

import numpy as np

from batchwise.config.apps import AppSpec

MODEL_SLOS = {
    "VGG19": [0.3 + 0.1 * i for i in range(8)],
    "Bert": [0.3 + 0.1 * i for i in range(8)],
    "GPT-2": [1.0 + 0.2 * i for i in range(8)],
    "VideoMAE": [1.0 + 0.2 * i for i in range(8)],
}
"""The paper's 8-app workloads: SLOs 0.3…1.0 s (VGG-19, BERT), 1.0…2.4 s (GPT-2, VideoMAE)."""

RATE_MIXES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "low": lambda rng, n: rng.uniform(0.2, 2.0, n),
    "mixed": lambda rng, n: np.clip(rng.lognormal(1.0, 1.0, n), 0.2, 40.0),
    "high": lambda rng, n: rng.uniform(5.0, 30.0, n),
}
"""Per-app request-rate mixes (req/s)."""


def eight_apps(model: str, mix: str, seed: int) -> list[AppSpec]:
    rng = np.random.default_rng(seed)
    rates = RATE_MIXES[mix](rng, 8)
    return [
        AppSpec(name=f"app{i + 1}", slo=round(s, 2), rate=round(float(r), 3))
        for i, (s, r) in enumerate(zip(MODEL_SLOS[model], rates, strict=True))
    ]


def random_apps(n: int, seed: int, slo_lo: float = 0.3, slo_hi: float = 1.0) -> list[AppSpec]:
    rng = np.random.default_rng(seed)
    return [
        AppSpec(
            name=f"a{i}",
            slo=round(float(rng.uniform(slo_lo, slo_hi)), 3),
            rate=round(float(np.clip(rng.lognormal(0.0, 1.0), 0.05, 50.0)), 3),
        )
        for i in range(n)
    ]


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def markdown(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(out)
