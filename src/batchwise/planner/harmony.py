"""HarmonyBatch: Theorem 1/2 provisioning and the two-stage merging of Algorithm 1.

Provisioning of a group ``(s1, R, T0)`` (see :mod:`batchwise.planner.table`):

* CPU (Theorem 1): for each b the reachability/SLO budget is
  ``Lambda_b = min(s1, T0 - (b-1)/R)``; the SLO bound gives the smallest vCPU count
  ``c >= -beta' ln((Lambda_b - gamma') / alpha')`` (and the memory floor); the
  cost-optimal c is that bound, the largest size, or the interior minimum of
  ``c L_avg(c)`` (root of ``alpha (1 - c/beta) e^{-c/beta} + gamma``). A profile that
  keeps its measured allotments has no such closed form: every feasible size is tried.
* GPU (Theorem 2): for each memory size m, the largest batch b with
  ``L_max(b, m) <= Lambda_b``; keep the cheapest.

Merging: start from one group per app sorted by SLO. Stage 1 merges each run of
consecutive CPU groups once its rate exceeds the knee rate r* of its first app
(the smallest rate at which a lone app's best function turns from CPU to GPU).
Stage 2 walks the list and merges group i with i+1 whenever one is a GPU group
and the merge lowers the total cost, stepping back after each success. (The
paper's listing has a misprint, ``L[:high]`` for ``L[high:]``.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

from batchwise.config.apps import AppSpec
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import CpuProfile, ModelProfile
from batchwise.errors import PlanningError
from batchwise.perf.kinds import KINDS
from batchwise.planner.base import Part, PlannerOptions, TablePlanner
from batchwise.planner.group import REACH_EPS, GroupSummary
from batchwise.planner.table import ConfigTable

KNEE_RATE_LOW = 0.01
"""Bisection bracket (req/s) for the knee rate r*, as in the authors' code."""
KNEE_RATE_HIGH = 40.0
KNEE_RATE_TOL = 1e-3


def _budget(g: GroupSummary, b: int) -> float:
    if b == 1:
        return g.s1
    return min(g.s1, g.t0 - (b - 1) / g.rate + REACH_EPS / g.rate)


def _interior_min_vcpu(cpu: CpuProfile, b: int, hi: float) -> float | None:
    """Interior minimum of c L_avg(c) on (0, hi], if any.

    ``d/dc [c L(c)] = alpha (1 - x) e^{-x} + gamma`` with ``x = c / beta`` is smallest at
    x = 2; when negative there, c L(c) rises, falls, then rises again, and its local
    minimum is the root beyond x = 2.
    """
    alpha, beta, gamma = cpu.avg[b - 1]

    def deriv(c: float) -> float:
        return alpha * (1 - c / beta) * math.exp(-c / beta) + gamma

    lo = 2 * beta
    if lo >= hi or deriv(lo) >= 0 or deriv(hi) <= 0:
        return None
    for _ in range(60):
        mid = (lo + hi) / 2
        if deriv(mid) < 0:
            lo = mid
        else:
            hi = mid
    return hi


class TheoremProvisioner:
    """Provision groups with the paper's closed forms; rows refer to a full ConfigTable."""

    def __init__(self, profile: ModelProfile, prices: PriceBook, table: ConfigTable) -> None:
        self.profile = profile
        self.prices = prices
        self.table = table
        self.index = {
            (fn.kind, KINDS[fn.kind].size(fn), int(b)): i
            for i, (fn, b) in enumerate(zip(table.functions, table.batch, strict=True))
        }

    def _ok(self, row: int, g: GroupSummary) -> bool:
        return self.table.lat_max[row] <= _budget(g, int(self.table.batch[row]))

    def _cpu_rows(self, g: GroupSummary) -> list[int]:
        cpu = self.profile.cpu
        if cpu is None:
            return []
        p = self.prices
        rows = []
        if cpu.measured:
            # Latency from measured allotments (thread-aware) has no closed form to
            # invert: every feasible size is a candidate (the caller keeps the cheapest).
            return [i for (kind, _size, _b), i in self.index.items()
                    if kind == "cpu" and self._ok(i, g)]  # fmt: skip
        for b in range(1, cpu.max_batch + 1):
            lam = _budget(g, b)
            alpha, beta, gamma = cpu.max[b - 1]
            if lam <= gamma:
                continue
            c_lat = -beta * math.log((lam - gamma) / alpha) if alpha > 0 else p.vcpu_min
            cands = {max(c_lat, p.vcpu_min), p.vcpu_max}
            c_int = _interior_min_vcpu(cpu, b, p.vcpu_max)
            if c_int is not None:
                cands.add(c_int)
            for c in cands:
                steps = math.ceil((c - p.vcpu_min) / p.vcpu_step - 1e-9)
                # Walk up the grid from the bound until memory rules and rounding allow it.
                for k in range(steps, steps + 400):
                    c_grid = round(p.vcpu_min + k * p.vcpu_step, 4)
                    if c_grid > p.vcpu_max + 1e-9:
                        break
                    row = self.index.get(("cpu", c_grid, b))
                    if row is not None and self._ok(row, g):
                        rows.append(row)
                        break
        return rows

    def _gpu_rows(self, g: GroupSummary) -> list[int]:
        gpu = self.profile.gpu
        if gpu is None:
            return []
        rows = []
        for m in sorted({fn.gpu_memory_gb for fn in self.table.functions if fn.kind == "gpu"}):
            for b in range(gpu.max_batch, 0, -1):
                row = self.index.get(("gpu", m, b))
                if row is not None and self._ok(row, g):
                    rows.append(row)
                    break
        return rows

    def provision(self, g: GroupSummary, kinds: Sequence[str] = ("cpu", "gpu")) -> int | None:
        rows = (self._cpu_rows(g) if "cpu" in kinds else []) + (
            self._gpu_rows(g) if "gpu" in kinds else []
        )
        if not rows:
            return None
        return min(rows, key=lambda r: (self.table.cost[r], r))


class HarmonyPlanner(TablePlanner):
    name = "harmony"
    max_apps = 2000  # merging rounds are ~n^1.1: 2000 apps take ~9 s on one core

    def partition(
        self,
        apps: list[AppSpec],
        table: ConfigTable,
        profile: ModelProfile,
        prices: PriceBook,
        options: PlannerOptions,
    ) -> list[Part]:
        prov = TheoremProvisioner(profile, prices, table)
        formula = options.eq_timeout

        @cache
        def provision(members: tuple[int, ...]) -> tuple[int | None, float]:
            g = GroupSummary.of(
                [ordered[i].slo for i in members], [ordered[i].rate for i in members], formula
            )
            row = prov.provision(g)
            return row, (math.inf if row is None else g.rate * float(table.cost[row]))

        @cache
        def knee_rate(slo: float) -> float:
            lo, hi = KNEE_RATE_LOW, KNEE_RATE_HIGH
            while hi - lo > KNEE_RATE_TOL:
                mid = (lo + hi) / 2
                row = prov.provision(GroupSummary(slo, mid, slo))
                if row is not None and table.functions[row].kind == "gpu":
                    hi = mid
                else:
                    lo = mid
            return hi

        ordered = sorted(apps, key=lambda a: (a.slo, a.name))
        groups: list[tuple[int, ...]] = [(i,) for i in range(len(ordered))]
        for grp in groups:
            if provision(grp)[0] is None:
                a = ordered[grp[0]]
                raise PlanningError(
                    f"app {a.name!r}: SLO {a.slo:g} s cannot be met by any function"
                )

        def is_cpu(grp: tuple[int, ...]) -> bool:
            return table.functions[provision(grp)[0]].kind == "cpu"  # type: ignore[index]

        groups = self._stage1(groups, ordered, is_cpu, provision, knee_rate)
        groups = self._stage2(groups, is_cpu, provision)
        parts = [
            Part([(ordered[i], ordered[i].rate) for i in grp], int(provision(grp)[0]))  # type: ignore[arg-type]
            for grp in groups
        ]
        return parts

    @staticmethod
    def _stage1(groups, ordered, is_cpu, provision, knee_rate):
        out: list[tuple[int, ...]] = []
        i = 0
        while i < len(groups):
            if not is_cpu(groups[i]):
                out.append(groups[i])
                i += 1
                continue
            threshold = knee_rate(ordered[groups[i][0]].slo)
            j, total = i, 0.0
            while j < len(groups) and is_cpu(groups[j]):
                total += sum(ordered[k].rate for k in groups[j])
                j += 1
                if total > threshold:
                    break
            run = groups[i:j]
            merged = tuple(k for grp in run for k in grp)
            before = sum(provision(grp)[1] for grp in run)
            if len(run) > 1 and total > threshold and provision(merged)[1] < before:
                out.append(merged)
            else:
                out.extend(run)
            i = j
        return out

    @staticmethod
    def _stage2(groups, is_cpu, provision):
        groups = list(groups)
        i = 0
        # Invariant: groups stay in SLO order; only neighbours i, i+1 are ever merged.
        while i + 1 < len(groups):
            a, b = groups[i], groups[i + 1]
            if is_cpu(a) and is_cpu(b):
                i += 1
                continue
            merged = a + b
            if provision(merged)[1] < provision(a)[1] + provision(b)[1] - 1e-15:
                groups[i : i + 2] = [merged]
                i = max(0, i - 1)
            else:
                i += 1
        return groups
