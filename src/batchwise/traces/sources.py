"""Arrival-process generators: each returns an :class:`ArrivalTrace`.

Why pure functions with an explicit ``seed``: the simulator and the benchmarks
must replay the same arrivals run after run, so nothing here reads the clock or
a global RNG. Generation is vectorised (one Poisson draw per rate bin, one
uniform draw per request, one sort), so an hour at 100 req/s takes milliseconds.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping

import numpy as np

from batchwise.traces.base import ArrivalTrace

SECONDS_PER_MINUTE = 60.0
"""Bin width, in seconds, of a per-minute count series."""


def derive_seed(seed: int, app: str) -> int:
    """A per-app seed derived from ``seed`` and the app's name.

    Why: keying each app's stream on its name (not its position) keeps an app's
    arrivals unchanged when other apps are added, removed or reordered.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    state = np.random.SeedSequence([seed, zlib.crc32(app.encode("utf-8"))]).generate_state(1)
    return int(state[0])


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


def _check_scale(scale: float) -> None:
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a finite number >= 0, got {scale}")


def _clip(times: np.ndarray, duration_s: float) -> np.ndarray:
    """Keep float rounding from putting a time at ``duration_s`` (the bound is open)."""
    return np.minimum(times, np.nextafter(duration_s, 0.0))


def _piecewise(rates: np.ndarray, bin_s: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted arrivals of a Poisson process whose rate is ``rates[i]`` in bin ``i``.

    Given the count in a bin, Poisson arrivals are i.i.d. uniform inside it.
    """
    counts = rng.poisson(rates * bin_s)
    starts = np.repeat(np.arange(len(rates), dtype=np.float64) * bin_s, counts)
    times = np.sort(starts + rng.uniform(0.0, bin_s, size=starts.size))
    return _clip(times, len(rates) * bin_s)


def _rate_series(series: Iterable[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(series, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D series")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{what} must be finite and >= 0")
    return arr


def poisson(rates: Mapping[str, float], duration_s: float, seed: int) -> ArrivalTrace:
    """Homogeneous Poisson arrivals at ``rates[app]`` req/s for ``duration_s`` seconds.

    Each app draws from its own stream (:func:`derive_seed`), so apps are independent.
    """
    _check_positive("duration_s", duration_s)
    arrivals: dict[str, np.ndarray] = {}
    for app, rate in rates.items():
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"rate of {app!r} must be finite and >= 0, got {rate}")
        rng = np.random.default_rng(derive_seed(seed, app))
        n = rng.poisson(rate * duration_s)
        arrivals[app] = _clip(np.sort(rng.uniform(0.0, duration_s, size=n)), duration_s)
    return ArrivalTrace(arrivals, float(duration_s))


def from_minute_counts(
    app: str, counts: Iterable[float] | np.ndarray, seed: int, scale: float = 1.0
) -> ArrivalTrace:
    """Poisson arrivals with rate ``scale * counts[i] / 60`` req/s during minute ``i``.

    The per-minute totals are Poisson draws around ``scale * counts[i]``, not the
    exact counts: the file gives a shape, and each seed gives a fresh realisation.
    """
    _check_scale(scale)
    rates = _rate_series(counts, "counts") * (scale / SECONDS_PER_MINUTE)
    times = _piecewise(rates, SECONDS_PER_MINUTE, np.random.default_rng(seed))
    return ArrivalTrace({app: times}, len(rates) * SECONDS_PER_MINUTE)


def from_rps(
    app: str, series: Iterable[float] | np.ndarray, seed: int, scale: float = 1.0
) -> ArrivalTrace:
    """Poisson arrivals with rate ``scale * series[i]`` req/s during second ``i``."""
    _check_scale(scale)
    rates = _rate_series(series, "series") * scale
    times = _piecewise(rates, 1.0, np.random.default_rng(seed))
    return ArrivalTrace({app: times}, float(len(rates)))


def from_timestamps(
    app: str,
    times: Iterable[float] | np.ndarray,
    scale: float = 1.0,
    *,
    duration_s: float | None = None,
) -> ArrivalTrace:
    """Replay recorded arrival times exactly (no randomness).

    ``scale`` compresses time: each time ``t`` becomes ``t / scale``, so the
    request rate is multiplied by ``scale`` while the request count, their order
    and the relative gaps are kept (``scale=2`` plays the recording twice as fast).
    ``duration_s`` is the recording's unscaled length (it must exceed the last
    time); by default the last time rounded up to the next whole second. The
    trace lasts ``duration_s / scale``.
    """
    _check_positive("scale", scale)
    arr = np.sort(np.asarray(times, dtype=np.float64))
    if arr.ndim != 1:
        raise ValueError("times must be 1-D")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("times must be finite and >= 0")
    last = float(arr[-1]) if arr.size else -1.0
    if duration_s is None:
        duration_s = math.floor(last) + 1.0
    elif not duration_s > last:
        raise ValueError(f"duration_s={duration_s} must exceed the last time {last}")
    d = duration_s / scale
    return ArrivalTrace({app: _clip(arr / scale, d)}, d)


def merge(traces: Iterable[ArrivalTrace]) -> ArrivalTrace:
    """Superpose traces: union of apps, duration the longest.

    An app present in several traces gets the union of its arrivals (the
    superposition of independent processes), so no arrival is silently dropped.
    """
    parts: dict[str, list[np.ndarray]] = {}
    duration_s = 0.0
    for trace in traces:
        duration_s = max(duration_s, trace.duration_s)
        for app, times in trace.arrivals.items():
            parts.setdefault(app, []).append(times)
    arrivals = {
        app: arrs[0] if len(arrs) == 1 else np.sort(np.concatenate(arrs))
        for app, arrs in parts.items()
    }
    return ArrivalTrace(arrivals, duration_s)


def truncate(trace: ArrivalTrace, duration_s: float) -> ArrivalTrace:
    """The first ``duration_s`` seconds of ``trace``.

    Refuses to lengthen: a longer duration would claim the tail had no requests
    when the source simply ends. Use :func:`repeat` to extend a trace.
    """
    _check_positive("duration_s", duration_s)
    if duration_s > trace.duration_s:
        raise ValueError(
            f"cannot truncate a {trace.duration_s:g} s trace to a longer {duration_s:g} s"
        )
    arrivals = {
        app: times[: np.searchsorted(times, duration_s, side="left")]
        for app, times in trace.arrivals.items()
    }
    return ArrivalTrace(arrivals, float(duration_s))


def repeat(trace: ArrivalTrace, duration_s: float) -> ArrivalTrace:
    """Extend ``trace`` periodically (period ``trace.duration_s``) and cut it at ``duration_s``.

    Why: a short recording can drive a longer experiment while keeping its shape.
    """
    _check_positive("duration_s", duration_s)
    _check_positive("trace.duration_s", trace.duration_s)
    copies = math.ceil(duration_s / trace.duration_s)
    offsets = np.arange(copies, dtype=np.float64) * trace.duration_s
    looped = ArrivalTrace(
        {app: (t[None, :] + offsets[:, None]).ravel() for app, t in trace.arrivals.items()},
        copies * trace.duration_s,
    )
    return truncate(looped, duration_s)


def rotate(trace: ArrivalTrace, offset_s: float) -> ArrivalTrace:
    """Shift every arrival by ``offset_s`` seconds, wrapping around the trace's end.

    Why: replaying one recording for several apps with different offsets keeps
    its statistics while the apps' bursts no longer line up.
    """
    d = trace.duration_s
    _check_positive("trace.duration_s", d)
    arrivals = {app: _clip(np.sort((t + offset_s) % d), d) for app, t in trace.arrivals.items()}
    return ArrivalTrace(arrivals, d)
