"""Re-planning over time, as in the HarmonyBatch paper's experiments.

Time is cut into windows of ``window_s``. At the start of window k (an URGENT
event, so it precedes any arrival at the same instant) the planner is called with
the rates observed in window k-1 (window 0: the apps' nominal rates) and a fresh
:class:`PlanRunner` takes every request that arrives in window k. Requests already
buffered under an older plan stay with that plan's groups and are dispatched at
their deadlines or when their batch fills, exactly as they would have been: a new
plan never re-batches them. Only past arrivals are read at a boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchwise.config.apps import AppSpec
from batchwise.config.limits import MAX_REPLAN_WINDOWS
from batchwise.config.plan import Plan
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.errors import ConfigError
from batchwise.perf.kinds import KINDS
from batchwise.perf.latency import LatencyModel
from batchwise.sim.core import URGENT, Environment
from batchwise.sim.serving import (
    AppStats,
    ArrivalProcess,
    MergedArrivals,
    PlanRunner,
    ServeLog,
    app_stats,
    predicted_cost_per_request,
    request_latencies,
    violations,
)
from batchwise.traces.base import ArrivalTrace

DEFAULT_REPLAN_WINDOW_S = 60.0
"""Seconds between re-plans (the paper re-plans every minute on its per-minute traces)."""

Planner = Callable[[list[AppSpec]], Plan]


@dataclass(frozen=True)
class WindowStats:
    """One window: the plan made at its start and the requests that arrived in it.

    ``cost`` includes batches of these requests dispatched after the window ended.
    """

    index: int
    start_s: float
    end_s: float
    planned_rates: dict[str, float]  # req/s the plan was made for
    requests: int
    cost: float
    cost_per_request: float
    predicted_cost_per_request: float
    violations: int
    slo_violation_rate: float
    groups: int
    gpu_groups: int
    cpu_groups: int
    functions: tuple[str, ...]  # function of each group, e.g. "GPU 2 GB", "CPU 1.60 vCPU"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.__dict__)
        d["planned_rates"] = {k: float(v) for k, v in self.planned_rates.items()}
        d["functions"] = list(self.functions)
        return d


@dataclass(frozen=True)
class AdaptiveResult:
    """Outcome of :func:`simulate_adaptive`; ``latencies`` and ``plans`` are not in JSON."""

    window_s: float
    seed: int
    duration_s: float
    requests: int
    total_cost: float
    cost_per_request: float
    slo_violation_rate: float
    apps: dict[str, AppStats]
    windows: list[WindowStats]
    plans: list[Plan] = field(repr=False, compare=False)
    latencies: dict[str, np.ndarray] = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Keys: window_s, seed, duration_s, requests, total_cost, cost_per_request,
        slo_violation_rate, apps {name: AppStats fields}, windows [WindowStats fields]."""
        return {
            "window_s": float(self.window_s),
            "seed": int(self.seed),
            "duration_s": float(self.duration_s),
            "requests": int(self.requests),
            "total_cost": float(self.total_cost),
            "cost_per_request": float(self.cost_per_request),
            "slo_violation_rate": float(self.slo_violation_rate),
            "apps": {a: s.to_dict() for a, s in self.apps.items()},
            "windows": [w.to_dict() for w in self.windows],
        }


class _Replanner:
    """Makes a plan at each window boundary and feeds that window's arrivals to it."""

    def __init__(
        self,
        env: Environment,
        arrivals: MergedArrivals,
        apps: list[AppSpec],
        planner: Planner,
        make_runner: Callable[[Plan], PlanRunner],
        window_s: float,
        route_rng: np.random.Generator,
        on_window: Callable[[int, int], None] | None = None,
    ) -> None:
        self._on_window = on_window  # (windows planned, windows in all): progress display
        self._env = env
        self._arrivals = arrivals
        self._apps = apps
        self._planner = planner
        self._make_runner = make_runner
        self._window_s = window_s
        self._route_rng = route_rng
        self.n_windows = max(1, math.ceil(arrivals.duration_s / window_s - 1e-9))
        # Window k holds request ids bounds[k] .. bounds[k+1]-1 (arrivals are time-sorted).
        edges = np.arange(self.n_windows + 1) * window_s
        self.bounds = np.searchsorted(arrivals.times, edges, side="left").tolist()
        self.bounds[-1] = len(arrivals)
        self.runners: list[PlanRunner] = []
        self.rates: list[dict[str, float]] = []
        self._group_of = [-1] * len(arrivals)
        self._app_of = [arrivals.apps[c] for c in arrivals.codes.tolist()]

    def start(self) -> None:
        self._env.schedule(0.0, lambda: self._boundary(0), URGENT)
        ArrivalProcess(self._env, self._arrivals.times, self._submit).start()

    def _observed_rates(self, k: int) -> dict[str, float]:
        """Rates seen in window k-1, floored at 1/window_s; nominal rates for window 0."""
        if k == 0:
            return {a.name: a.rate for a in self._apps}
        lo, hi = self.bounds[k - 1], self.bounds[k]
        counts = np.bincount(self._arrivals.codes[lo:hi], minlength=len(self._arrivals.apps))
        seen = dict(zip(self._arrivals.apps, counts.tolist(), strict=True))
        floor = 1.0 / self._window_s
        return {a.name: max(seen.get(a.name, 0) / self._window_s, floor) for a in self._apps}

    def _boundary(self, k: int) -> None:
        rates = self._observed_rates(k)
        specs = [AppSpec(name=a.name, slo=a.slo, rate=rates[a.name]) for a in self._apps]
        runner = self._make_runner(self._planner(specs))
        lo, hi = self.bounds[k], self.bounds[k + 1]
        self._group_of[lo:hi] = runner.route(self._arrivals, lo, hi, self._route_rng)
        self.runners.append(runner)
        self.rates.append(rates)
        if self._on_window is not None:
            self._on_window(k + 1, self.n_windows)
        if k + 1 < self.n_windows:
            self._env.schedule((k + 1) * self._window_s, lambda: self._boundary(k + 1), URGENT)

    def _submit(self, i: int) -> None:
        # The boundary of i's window ran first (URGENT), so the newest runner is i's.
        self.runners[-1].submit(i, self._app_of[i], self._group_of[i])


def _window_stats(
    rp: _Replanner, k: int, window_s: float, duration_s: float, bad: np.ndarray
) -> WindowStats:
    runner = rp.runners[k]
    lo, hi = rp.bounds[k], rp.bounds[k + 1]
    n = hi - lo
    cost = runner.cost()
    v = int(bad[lo:hi].sum())
    kinds = [s.fn.kind for s in runner.servers]
    return WindowStats(
        index=k,
        start_s=k * window_s,
        end_s=min((k + 1) * window_s, duration_s),
        planned_rates=rp.rates[k],
        requests=n,
        cost=cost,
        cost_per_request=cost / n if n else 0.0,
        predicted_cost_per_request=predicted_cost_per_request(runner.plan),
        violations=v,
        slo_violation_rate=v / n if n else 0.0,
        groups=len(runner.servers),
        gpu_groups=sum(KINDS[k].device == "gpu" for k in kinds),
        cpu_groups=kinds.count("cpu"),
        functions=tuple(s.fn.describe() for s in runner.servers),
    )


def simulate_adaptive(
    trace: ArrivalTrace,
    apps: list[AppSpec],
    planner: Planner,
    profile: ModelProfile,
    prices: PriceBook,
    window_s: float = DEFAULT_REPLAN_WINDOW_S,
    seed: int = 0,
    on_window: Callable[[int, int], None] | None = None,
) -> AdaptiveResult:
    """Serve ``trace`` while re-planning every ``window_s`` seconds from observed rates.

    Apps silent in the last window keep a floor rate of ``1/window_s`` so the
    planner still provisions them. Raises ConfigError for trace apps missing from
    ``apps``. Equal seeds give identical results (given a deterministic planner).
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    if not trace.duration_s / window_s <= MAX_REPLAN_WINDOWS:
        raise ConfigError(
            f"{trace.duration_s:g} s in windows of {window_s:g} s makes "
            f"{trace.duration_s / window_s:,.0f} re-planning windows; the limit is "
            f"{MAX_REPLAN_WINDOWS:,} (use a longer --window)"
        )
    arrivals = MergedArrivals.from_trace(trace)
    missing = sorted(set(arrivals.present_apps()) - {a.name for a in apps})
    if missing:
        raise ConfigError(f"apps in the trace but not in the apps list: {', '.join(missing)}")
    env = Environment()
    log = ServeLog(len(arrivals))
    latency = LatencyModel(profile.cpu, profile.gpu)
    route_seed, serve_seed = np.random.SeedSequence(seed).spawn(2)

    def make_runner(plan: Plan) -> PlanRunner:
        return PlanRunner(env, plan, latency, prices, serve_seed.spawn(1)[0], log)

    rp = _Replanner(
        env,
        arrivals,
        apps,
        planner,
        make_runner,
        window_s,
        np.random.default_rng(route_seed),
        on_window,
    )
    rp.start()
    env.run()
    log.check_complete()

    slos = {a.name: a.slo for a in apps}
    stats, raw = app_stats(arrivals, log, slos)
    bad = violations(arrivals, request_latencies(arrivals, log), slos)
    windows = [
        _window_stats(rp, k, window_s, arrivals.duration_s, bad) for k in range(rp.n_windows)
    ]
    n = len(arrivals)
    total = sum(w.cost for w in windows)
    return AdaptiveResult(
        window_s=window_s,
        seed=seed,
        duration_s=arrivals.duration_s,
        requests=n,
        total_cost=total,
        cost_per_request=total / n if n else 0.0,
        slo_violation_rate=int(bad.sum()) / n if n else 0.0,
        apps=stats,
        windows=windows,
        plans=[r.plan for r in rp.runners],
        latencies=raw,
    )
