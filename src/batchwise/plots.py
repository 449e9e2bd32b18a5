"""PNG charts for planner comparisons (simulation plots live in ``sim.plots``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from batchwise.outputs import save_figure
from batchwise.planner.compare import CompareRow


def plot_compare(rows: Sequence[CompareRow], path: str | Path, title: str) -> Path:
    """Bar chart of normalised cost per planner (lower is better)."""
    ok = [r for r in rows if r.normalized_cost is not None]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [r.algorithm for r in ok]
    vals = [r.normalized_cost for r in ok]
    colors = ["tab:red" if r.slo_violations_predicted else "tab:blue" for r in ok]
    bars = ax.bar(names, vals, color=colors)
    for bar, v in zip(bars, vals, strict=True):
        ax.annotate(
            f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8
        )
    ax.set_ylabel("cost per request (÷ BATCH's, same currency)")
    ax.set_title(title)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.tick_params(axis="x", rotation=30)
    if any(r.slo_violations_predicted for r in ok):
        ax.text(
            0.99,
            0.97,
            "red: SLO at risk",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color="tab:red",
        )
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
