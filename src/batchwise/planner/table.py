"""Every function configuration a planner may choose, precomputed as arrays.

Key fact that makes planning fast: within a group all timeouts are
``t_w = s_w - L_max``, and Eq. 5 is translation-equivariant, so
``T_eq(L_max) = T0 - L_max`` where ``T0`` is Eq. 5 folded over the SLOs themselves.
A configuration ``(b, L_max)`` is therefore feasible for a group summarised by
``(s1, R, T0)`` (tightest SLO, total rate, SLO-fold) iff

    L_max <= s1   and   b - 1 <= R * (T0 - L_max)     (reachability, b <= floor(R T_eq) + 1)

i.e. ``L_max <= Lambda_b = min(s1, T0 - (b - 1) / R)``. For each batch size the best
cost under a latency budget is a step function we precompute once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from batchwise.config.limits import MAX_TABLE_ROWS
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ModelProfile
from batchwise.errors import ConfigError
from batchwise.perf.cost import batch_cost
from batchwise.perf.functions import Function
from batchwise.perf.kinds import ALL_KINDS, KINDS
from batchwise.perf.latency import LatencyModel

__all__ = ["ALL_KINDS", "ConfigTable", "build_table", "clear_table_cache"]


@dataclass(frozen=True)
class ConfigTable:
    """Parallel arrays, one row per (function, batch size). Rows are CPU first, then GPU."""

    functions: list[Function]  # the function of each row
    batch: np.ndarray  # batch size b (int)
    lat_avg: np.ndarray  # L_avg of a full batch (s)
    lat_max: np.ndarray  # L_max the planner budgets for (s); = L_avg when deterministic
    true_lat_max: np.ndarray  # L_max of the true latency model (s)
    cost: np.ndarray  # full-batch cost per request (Eq. 6)

    def __len__(self) -> int:
        return len(self.functions)

    @cached_property
    def max_batch(self) -> int:
        return int(self.batch.max()) if len(self) else 0

    @cached_property
    def steps(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per batch size b (index b-1): rows sorted by L_max, prefix-min cost, argmin rows."""
        out = []
        for b in range(1, self.max_batch + 1):
            rows = np.flatnonzero(self.batch == b)
            order = rows[np.argsort(self.lat_max[rows], kind="stable")]
            lat = self.lat_max[order]
            cost = self.cost[order]
            best = np.minimum.accumulate(cost) if len(cost) else cost
            # Row index of the prefix minimum (first occurrence).
            arg = np.zeros(len(cost), dtype=int)
            for k in range(len(cost)):
                arg[k] = order[k] if k == 0 or cost[k] < best[k - 1] else arg[k - 1]
            out.append((lat, best, arg))
        return out


TABLE_CACHE_SIZE = 32
"""Config tables kept in memory (re-planning every window reuses the same one)."""


def build_table(
    profile: ModelProfile,
    prices: PriceBook,
    kinds: tuple[str, ...] = ALL_KINDS,
    deterministic: bool = False,
) -> ConfigTable:
    """Enumerate the platform's whole configuration grid for this model (cached).

    ``deterministic=True`` budgets with L_avg as if latency never varied (the BATCH
    baseline's assumption); ``true_lat_max`` still holds the real L_max.
    """
    _check_size(profile, prices, kinds)
    return _cached_table(profile.model_dump_json(), prices.model_dump_json(), kinds, deterministic)


def _check_size(profile: ModelProfile, prices: PriceBook, kinds: tuple[str, ...]) -> None:
    """Refuse a grid above MAX_TABLE_ROWS before enumerating it (it would take minutes)."""
    rows = sum(k.config_count(profile, prices) for name, k in KINDS.items() if name in kinds)
    if rows > MAX_TABLE_ROWS:
        raise ConfigError(
            f"model {profile.name!r} with price book {prices.name!r} makes {rows:,} "
            f"(function size, batch) configurations; the limit is {MAX_TABLE_ROWS:,} "
            "(use a larger vcpu_step or profile fewer batch sizes)"
        )


@lru_cache(maxsize=TABLE_CACHE_SIZE)
def _cached_table(
    profile_json: str, prices_json: str, kinds: tuple[str, ...], deterministic: bool
) -> ConfigTable:
    # Keyed on the JSON of the (frozen) models: pydantic models with list fields
    # are not hashable, and equal content must share a table.
    return _build_table(
        ModelProfile.model_validate_json(profile_json),
        PriceBook.model_validate_json(prices_json),
        kinds,
        deterministic,
    )


def _build_table(
    profile: ModelProfile, prices: PriceBook, kinds: tuple[str, ...], deterministic: bool
) -> ConfigTable:
    lm = LatencyModel(profile.cpu, profile.gpu)
    fns: list[Function] = []
    batch: list[int] = []
    avg: list[float] = []
    mx: list[float] = []
    for kind in (k for name, k in KINDS.items() if name in kinds):  # registry order
        for fn, b in kind.configs(profile, prices):
            fns.append(fn)
            batch.append(b)
            avg.append(lm.avg(fn, b))
            mx.append(lm.max(fn, b))
    b_arr = np.asarray(batch, dtype=int)
    avg_arr = np.asarray(avg, dtype=float)
    mx_arr = np.asarray(mx, dtype=float)
    cost = np.asarray(
        [batch_cost(fn, a, prices) / b for fn, a, b in zip(fns, avg, batch, strict=True)],
        dtype=float,
    )
    ok = np.isfinite(avg_arr) & np.isfinite(mx_arr) & (avg_arr > 0)
    keep = np.flatnonzero(ok)
    return ConfigTable(
        functions=[fns[i] for i in keep],
        batch=b_arr[keep],
        lat_avg=avg_arr[keep],
        lat_max=(avg_arr if deterministic else mx_arr)[keep],
        true_lat_max=mx_arr[keep],
        cost=cost[keep],
    )


def clear_table_cache() -> None:
    """Forget cached tables (benchmarks use it to time planning from cold)."""
    _cached_table.cache_clear()
