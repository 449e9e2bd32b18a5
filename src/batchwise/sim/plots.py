"""PNG plots of simulation results.

Figures are drawn on an explicit Agg canvas (``matplotlib.figure.Figure``), never
through ``pyplot``, so plotting needs no display, keeps no global figure state
and is safe to call from any thread or test.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from batchwise.outputs import save_figure
from batchwise.sim.replan import AdaptiveResult


class HasLatencies(Protocol):
    """Any result with raw per-app latencies (SimResult, AdaptiveResult)."""

    @property
    def latencies(self) -> Mapping[str, np.ndarray]: ...


def _save(fig: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(fig)
    return save_figure(fig, path)


def _title(what: str, plot: str) -> str:
    """``what`` (planner, model, trace) wrapped to the figure's width, then the plot's name."""
    return "\n".join([*textwrap.wrap(what, 90), plot]) if what else plot


def plot_latency_cdf(
    result: HasLatencies, slos: Mapping[str, float], path: str | Path, title: str = ""
) -> Path:
    """One latency CDF per app, with a dashed vertical line at each app's SLO.

    ``title`` names what ran (planner, trace); it precedes the generic title.
    """
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for app, lat in sorted(result.latencies.items()):
        if len(lat) == 0:
            continue
        x = np.sort(np.asarray(lat))
        y = np.arange(1, len(x) + 1) / len(x)
        (line,) = ax.step(x, y, where="post", label=app)
        if app in slos:
            ax.axvline(slos[app], color=line.get_color(), linestyle="--", linewidth=1)
    ax.set_xlabel("request latency (s)")
    ax.set_ylabel("fraction of requests ≤ latency")
    ax.set_ylim(0, 1.02)
    ax.set_title(_title(title, "latency CDF per app (dashed: SLO)"), fontsize=10)
    ax.grid(alpha=0.3)
    if result.latencies:
        ax.legend(loc="lower right")
    return _save(fig, path)


def plot_adaptive(
    result: AdaptiveResult, path: str | Path, title: str = "", currency: str = ""
) -> Path:
    """Cost per request (measured and predicted) and SLO violation rate per window."""
    starts = np.array([w.start_s for w in result.windows]) / 60.0
    fig = Figure(figsize=(8, 6), layout="constrained")
    ax_cost, ax_viol = fig.subplots(2, 1, sharex=True)
    ax_cost.plot(starts, [w.cost_per_request for w in result.windows], marker=".", label="measured")
    ax_cost.plot(
        starts,
        [w.predicted_cost_per_request for w in result.windows],
        linestyle="--",
        label="plan's prediction",
    )
    ax_cost.set_ylabel(f"cost per request ({currency})" if currency else "cost per request")
    ax_cost.set_title(_title(title, f"re-planning every {result.window_s:g} s"), fontsize=10)
    ax_cost.legend(loc="best")
    ax_cost.grid(alpha=0.3)
    ax_viol.plot(starts, [100 * w.slo_violation_rate for w in result.windows], marker=".")
    ax_viol.set_ylabel("SLO violations (%)")
    ax_viol.set_ylim(
        bottom=0, top=max(1.0, 110 * max((w.slo_violation_rate for w in result.windows), default=0))
    )
    ax_viol.set_xlabel("window start (min)")
    ax_viol.grid(alpha=0.3)
    return _save(fig, path)
