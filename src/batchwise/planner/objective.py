"""The planning objective: the paper's full-batch cost, or the expected cost users pay.

Why both: planners (the paper's included) price a group as if every batch were full
(Eq. 6), but under Poisson arrivals batches that time out are smaller and cost more
per request — what a user pays is the *expected* cost, 5–20 % higher. With
``objective="expected"`` every group chosen by the planner is provisioned again: among
its feasible (function, batch size) rows, the one with the least expected cost
(renewal-reward, :func:`batchwise.perf.cost.expected_cost_given_pmf`). The grouping
itself stays the planner's (its searches rank groups by the full-batch cost, which
the step-function tables make fast).

Exact, and cheap: a row's expected cost is never below its full-batch cost (a smaller
batch never costs less per request), so rows are tried in increasing full-batch cost
and the search stops at the first one that cannot beat the best expected cost found.

The planner's own row is kept unless another is predicted cheaper by more than
``MIN_GAIN``: on 120 simulated workloads (bench/objective.py, bench/RESULTS.md §3b)
the switches predicted to gain under 2 % were as often dearer as cheaper when
simulated (the renewal-reward model treats a group's per-app timeouts as one), while
every larger predicted gain was real.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from batchwise.config.prices import PriceBook
from batchwise.perf.cost import batch_size_pmf, expected_cost_given_pmf
from batchwise.perf.latency import LatencyModel
from batchwise.planner.group import GroupSummary, feasible_mask
from batchwise.planner.table import ConfigTable

Objective = Literal["full-batch", "expected"]
OBJECTIVES: tuple[str, ...] = ("full-batch", "expected")
DEFAULT_OBJECTIVE = "expected"
"""The default since it was cheaper when simulated (bench/RESULTS.md §3b): the paper's
full-batch objective is one ``--objective full-batch`` away (Table I reproduces with it)."""
MAX_CANDIDATES = 4096
"""Rows tried per group at most (a bound on time; the stopping rule usually ends sooner)."""

MIN_GAIN = 0.02
"""Relative predicted gain below which the planner's row is kept (the model's noise)."""


def _expected_cost(table: ConfigTable, g: GroupSummary, row: int, lm: LatencyModel,
                   prices: PriceBook) -> float:  # fmt: skip
    fn, b = table.functions[row], int(table.batch[row])
    t_eq = max(0.0, g.t0 - float(table.lat_max[row]))
    return expected_cost_given_pmf(fn, lm.avg_upto(fn, b), batch_size_pmf(g.rate, t_eq, b), prices)


def expected_row(table: ConfigTable, g: GroupSummary, lm: LatencyModel, prices: PriceBook,
                 incumbent: int | None = None) -> int | None:  # fmt: skip
    """Feasible row of least expected cost per request for group ``g`` (None if none).

    With ``incumbent`` (the planner's row), that row stays unless another is predicted
    cheaper by more than ``MIN_GAIN``.
    """
    rows = np.flatnonzero(feasible_mask(table, g))
    if len(rows) == 0:
        return None
    rows = rows[np.argsort(table.cost[rows], kind="stable")][:MAX_CANDIDATES]
    best, best_cost = int(rows[0]), math.inf
    for r in rows:
        if table.cost[r] >= best_cost:
            break  # every later row costs at least this even when its batches are full
        c = _expected_cost(table, g, int(r), lm, prices)
        if c < best_cost:
            best, best_cost = int(r), c
    keep = (
        incumbent is not None
        and best != incumbent
        and (best_cost >= (1.0 - MIN_GAIN) * _expected_cost(table, g, incumbent, lm, prices))
    )
    return incumbent if keep else best
