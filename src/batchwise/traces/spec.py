"""The ``--trace`` mini-language: a few short strings turned into one ArrivalTrace.

Grammar (one string per ``--trace``; several may be combined)::

    spec   := [APP "="] KIND [":" SOURCE]
    KIND   := "poisson"                      (no SOURCE)
            | "minute"     ":" PATH | BUILTIN  (per-minute counts; BUILTIN = app1..app4)
            | "rps"        ":" PATH          (per-second rates, one per line)
            | "timestamps" ":" PATH          (CSV of request times, replayed)

Semantics, and why:

* ``APP=KIND:SOURCE`` drives that one app with the source as-is (rates and times
  unchanged): the user asked for exactly this recording.
* A spec without ``APP=`` gives the *shape* for every app not named elsewhere.
  Each app gets the shape rescaled so its mean rate over the source's full
  length equals its planned rate (rate series are multiplied; timestamp replays
  are sped up or slowed down). Why: the planned rates are what the plan was
  sized for, and the shape only says how load varies around them. Each app uses
  its own seed (:func:`~batchwise.traces.sources.derive_seed`) and timestamp
  replays are rotated by a seeded per-app offset, so apps are not identical.
* ``poisson`` is Poisson at each app's planned rate (``APP=poisson``: that app only).
* At most one spec may omit ``APP=``; no app may be named twice; every app must
  be driven by some spec. An empty list means ``["poisson"]``.
* Duration: ``duration_s`` if given; otherwise the longest source's own length
  (at the source's own speed), or :data:`DEFAULT_POISSON_DURATION_S` when only
  ``poisson`` is used. A shorter source is repeated periodically to fill it, a
  longer one is cut. Within a cut window the rate follows the shape's local
  level, so it matches the planned rate only on average over the whole source.
  A rescaled timestamp replay lasts ``length / scale``; it is cycled from its
  seeded offset, so over a shorter window its rate equals the planned rate in
  expectation over seeds, not exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from batchwise.config.limits import MAX_DURATION_S, MAX_SIM_REQUESTS
from batchwise.errors import ConfigError
from batchwise.traces import sources
from batchwise.traces.base import ArrivalTrace
from batchwise.traces.loaders import (
    BUILTIN_MINUTE_TRACES,
    builtin_minute_counts,
    load_minute_counts,
    load_rps,
    load_timestamps,
)

DEFAULT_POISSON_DURATION_S = 600.0
"""Trace length in seconds when only ``poisson`` specs are given and no duration."""

_SPEC = re.compile(r"^(?:(?P<app>[^=:]+)=)?\s*(?P<kind>[A-Za-z_]+)\s*(?::(?P<source>.*))?$")


class TraceKind(StrEnum):
    """The arrival process a spec names."""

    POISSON = "poisson"
    MINUTE = "minute"
    RPS = "rps"
    TIMESTAMPS = "timestamps"


@dataclass(frozen=True)
class TraceSpec:
    """One parsed ``--trace`` string."""

    text: str  # the original string, quoted in every error
    app: str | None  # None: the shape for every app not named elsewhere
    kind: TraceKind
    source: str | None  # path or builtin name; None exactly when kind is POISSON


@dataclass(frozen=True)
class _Shape:
    """A loaded source: a rate series (per bin) or recorded times."""

    kind: TraceKind
    values: np.ndarray  # rates per bin (MINUTE: counts per minute) or times in s
    length_s: float  # the source's own length at its own speed, > 0
    mean_rate: float  # requests per second over length_s


def parse_spec(text: str) -> TraceSpec:
    """Parse one spec string; raise ConfigError naming it if malformed."""
    m = _SPEC.match(text.strip())
    if m is None:
        raise ConfigError(f"trace spec {text!r}: malformed, expected [APP=]KIND[:SOURCE]")
    app = m["app"].strip() if m["app"] is not None else None
    try:
        kind = TraceKind(m["kind"].lower())
    except ValueError:
        known = ", ".join(k.value for k in TraceKind)
        raise ConfigError(
            f"trace spec {text!r}: unknown kind {m['kind']!r} (known: {known})"
        ) from None
    source = m["source"].strip() if m["source"] is not None else None
    if kind is TraceKind.POISSON and source is not None:
        raise ConfigError(f"trace spec {text!r}: 'poisson' takes no source")
    if kind is not TraceKind.POISSON and not source:
        raise ConfigError(f"trace spec {text!r}: '{kind}' needs a source, e.g. {kind}:PATH")
    return TraceSpec(text, app, kind, source)


def _load_shape(spec: TraceSpec) -> _Shape | None:
    if spec.kind is TraceKind.POISSON:
        return None
    assert spec.source is not None  # parse_spec guarantees it
    try:
        if spec.kind is TraceKind.MINUTE:
            counts = (
                builtin_minute_counts(spec.source)
                if spec.source in BUILTIN_MINUTE_TRACES
                else load_minute_counts(spec.source)
            )
            length_s = counts.size * sources.SECONDS_PER_MINUTE
            return _Shape(spec.kind, counts, length_s, float(counts.sum()) / length_s)
        if spec.kind is TraceKind.RPS:
            rps = load_rps(spec.source)
            return _Shape(spec.kind, rps, float(rps.size), float(rps.mean()))
        times = load_timestamps(spec.source)
        length_s = math.floor(times[-1]) + 1.0
        return _Shape(spec.kind, times, length_s, times.size / length_s)
    except ConfigError as exc:
        raise ConfigError(f"trace spec {spec.text!r}: {exc}") from None


def _cycled(values: np.ndarray, bin_s: float, duration_s: float) -> np.ndarray:
    """The rate series repeated periodically to cover ``duration_s``."""
    return np.resize(values, max(values.size, math.ceil(duration_s / bin_s)))


def _fit(trace: ArrivalTrace, duration_s: float) -> ArrivalTrace:
    if duration_s > trace.duration_s:
        return sources.repeat(trace, duration_s)
    return sources.truncate(trace, duration_s)


def _drive(
    app: str, shape: _Shape, scale: float, seed: int, duration_s: float, rotate: bool
) -> ArrivalTrace:
    """Arrivals for one app from a loaded shape, fitted to ``duration_s``."""
    app_seed = sources.derive_seed(seed, app)
    if scale == 0:
        return ArrivalTrace({app: np.empty(0)}, duration_s)
    if shape.kind is TraceKind.MINUTE:
        counts = _cycled(shape.values, sources.SECONDS_PER_MINUTE, duration_s)
        return _fit(sources.from_minute_counts(app, counts, app_seed, scale), duration_s)
    if shape.kind is TraceKind.RPS:
        rps = _cycled(shape.values, 1.0, duration_s)
        return _fit(sources.from_rps(app, rps, app_seed, scale), duration_s)
    trace = sources.from_timestamps(app, shape.values, scale, duration_s=shape.length_s)
    if rotate:
        offset = np.random.default_rng(app_seed).uniform(0.0, trace.duration_s)
        trace = sources.rotate(trace, offset)
    return _fit(trace, duration_s)


def _assign(specs: Sequence[TraceSpec], apps: Sequence[str]) -> dict[str, TraceSpec]:
    """Which spec drives each app; ConfigError on unknown, doubled or missing apps."""
    named: dict[str, TraceSpec] = {}
    default: TraceSpec | None = None
    for spec in specs:
        if spec.app is None:
            if default is not None:
                raise ConfigError(
                    f"trace spec {spec.text!r}: only one spec may omit APP= "
                    f"(already given: {default.text!r})"
                )
            default = spec
        elif spec.app not in apps:
            known = ", ".join(apps) or "none"
            raise ConfigError(
                f"trace spec {spec.text!r}: unknown app {spec.app!r} (known: {known})"
            )
        elif spec.app in named:
            raise ConfigError(
                f"trace spec {spec.text!r}: app {spec.app!r} is already driven by "
                f"{named[spec.app].text!r}"
            )
        else:
            named[spec.app] = spec
    missing = [app for app in apps if app not in named]
    if missing and default is None:
        raise ConfigError(
            f"no trace spec drives app(s) {', '.join(missing)}; add a spec without APP= "
            "(e.g. 'poisson') to drive the rest"
        )
    return {app: named[app] if app in named else _require(default) for app in apps}


def _require(spec: TraceSpec | None) -> TraceSpec:
    assert spec is not None  # _assign raised if an app had neither
    return spec


def _check_inputs(rates: Mapping[str, float], seed: int, duration_s: float | None) -> None:
    if seed < 0:
        raise ConfigError(f"trace seed must be >= 0, got {seed}")
    for app, rate in rates.items():
        if not (math.isfinite(rate) and rate >= 0):
            raise ConfigError(f"planned rate of app {app!r} must be finite and >= 0, got {rate}")
    if duration_s is not None and not (0 < duration_s <= MAX_DURATION_S):
        raise ConfigError(
            f"duration must be a number in (0, {MAX_DURATION_S:g}] s, got {duration_s}"
        )


def build_trace(
    specs: list[str], rates: dict[str, float], seed: int, duration_s: float | None
) -> ArrivalTrace:
    """Build the arrivals of every app in ``rates`` (req/s) from ``--trace`` specs.

    See the module docstring for the grammar and the rescaling rule. The result
    has an entry for every app in ``rates`` and lasts ``duration_s`` seconds
    (``None``: the sources' own length).
    """
    _check_inputs(rates, seed, duration_s)
    parsed = [parse_spec(text) for text in (specs or ["poisson"])]
    assignment = _assign(parsed, list(rates))
    # Load every spec, used or not, so a bad path is reported either way.
    shapes = {spec.text: _load_shape(spec) for spec in parsed}
    if duration_s is None:
        used = {spec.text for spec in assignment.values()}
        lengths = [s.length_s for t, s in shapes.items() if s is not None and t in used]
        duration_s = max(lengths, default=DEFAULT_POISSON_DURATION_S)
        _check_inputs(rates, seed, duration_s)

    plans: list[tuple[str, TraceSpec, _Shape | None, float]] = []
    for app, spec in assignment.items():
        shape = shapes[spec.text]
        scale = 1.0
        if shape is not None and spec.app is None:
            if shape.mean_rate == 0 and rates[app] > 0:
                raise ConfigError(
                    f"trace spec {spec.text!r}: source has no requests, "
                    f"cannot rescale it to app {app!r}'s planned rate"
                )
            scale = rates[app] / shape.mean_rate if rates[app] > 0 else 0.0
        plans.append((app, spec, shape, scale))
    _check_size(plans, rates, duration_s)
    parts: list[ArrivalTrace] = []
    for app, spec, shape, scale in plans:
        if shape is None:
            parts.append(sources.poisson({app: rates[app]}, duration_s, seed))
        else:
            parts.append(_drive(app, shape, scale, seed, duration_s, rotate=spec.app is None))
    return ArrivalTrace(sources.merge(parts).arrivals, float(duration_s))


def _check_size(
    plans: Sequence[tuple[str, TraceSpec, _Shape | None, float]],
    rates: Mapping[str, float],
    duration_s: float,
) -> None:
    """Refuse, before generating anything, a trace expected to exceed MAX_SIM_REQUESTS."""
    expected = 0.0
    for app, _, shape, scale in plans:
        expected += (rates[app] if shape is None else shape.mean_rate * scale) * duration_s
    if not expected <= MAX_SIM_REQUESTS:
        raise ConfigError(
            f"the traces would generate about {expected:.3g} requests in {duration_s:g} s; "
            f"the limit is {MAX_SIM_REQUESTS:,} (shorten --duration or lower the rates)"
        )
