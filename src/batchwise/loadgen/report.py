"""What a load run measured, and its report: the ``--json`` object, the tables, the PNG.

:class:`Measurement` holds one record per scheduled request (parallel numpy arrays)
plus the gateway's counters read before and after the run; :func:`summarize` turns
it into the report. Nothing here does I/O except :func:`print_report` (a console),
:func:`plot_timeline` (a PNG) and :func:`write_records` (a CSV); none reads a clock.

Every scheduled request ends in exactly one category: ``ok`` (2xx), ``rejected``
(503: refused by admission or no instance), ``errors`` (any other HTTP code, or a
client-side failure: ``timeout``, ``connect``, ``disconnected``, ``client``,
``cancelled`` by Ctrl-C), or — only when the run was interrupted — never sent
(``scheduled - requests``). So ``ok + rejected + errors == requests`` always, and
``requests == scheduled`` unless ``interrupted``. Latencies run from the request's
*scheduled* send time (open loop: a late send is the generator's delay, and it
counts), to the end of the answer's body.

``load --json`` prints one object with these fields (``null`` where a value cannot
be computed: no requests of that kind, or a counter the gateway did not answer):

=============================  =============================================================
field                          meaning
=============================  =============================================================
``target``                     gateway base URL the load went to
``traces``                     the ``--trace`` specs (``["poisson"]`` by default)
``seed``, ``rate_scale``       ``--seed``; ``--rate-scale`` (multiplies the plan's rates)
``window_s``, ``timeout_s``    timeline window (s); per-request client timeout (s)
``interrupted``                true when Ctrl-C or SIGTERM stopped the run early (the other
                               fields hold what was measured until then)
``duration_s``                 seconds of trace that were sent (the trace length unless
                               interrupted)
``elapsed_s``                  wall seconds from the first send to the last answer
``scheduled``                  requests in the trace up to ``duration_s``
``requests``                   requests sent (== ``scheduled`` unless interrupted)
``ok``                         answered 2xx
``rejected``                   answered 503 (admission refused it, or no instance)
``errors``                     every other outcome: other HTTP codes and client errors
``by_code``                    ``errors`` split by HTTP code (``"500"``) or client error
                               (``"timeout"``, ``"connect"``, ``"disconnected"``,
                               ``"client"``, ``"cancelled"``)
``slo_s``                      the app's latency SLO (s) from the plan; ``null`` in totals
``slo_attainment``             ok answers within the SLO / admitted requests (admitted =
                               ``requests - rejected``)
``admitted_fraction``          admitted / ``requests``
``p50_s``, ``p99_s``           latency percentiles of ok answers (s, from scheduled time)
``reject_p99_s``               p99 latency of 503 answers (s): how fast refusals come back
``reject_sent_p99_s``          the same from each refusal's actual send, not its scheduled
                               one (s): the gateway's answer time without this generator's
                               own lateness (``sent_late_p99_s``)
``rate_planned``               planned rate × ``rate_scale`` (req/s)
``rate_sent``                  ``requests / duration_s`` (req/s achieved)
``sent_late_p99_s``            p99 of (actual send − scheduled send), s: the generator's own
                               health; large values mean this machine could not keep up
``cost_per_request_measured``  Δ(cost summed over the gateway's groups, ``/v1/stats``) / ok
``cost_per_request_predicted`` the served plan's ``expected_cost_per_request``
``currency``                   currency of both costs
``cpu_s_per_1000``             Δ``cpu_s`` of the gateway (process + instances) per 1000
                               requests sent
``loadgen_cpu_s_per_1000``     CPU seconds of this process per 1000 requests sent (with a
                               gateway running in the same process, as in tests, both)
``instances_max``              most instances (all groups) seen in any ``/v1/plan`` read
``epochs``                     ``[epoch before, epoch after]`` of the served plan
``poll_errors``                ``/v1/plan`` polls during the run that got no answer
``warnings``                   what could not be measured, one sentence each
``plot``                       the ``--plot`` PNG written, or ``null``
``records``                    the ``--records`` CSV written, or ``null``: one row per
                               scheduled request (``sched_s``, ``app``, ``status``: the
                               HTTP code, a client error's name or ``not_sent``,
                               ``latency_s`` from the scheduled send, ``sent_late_s``)
``apps``                       per app: ``scheduled``, ``requests``, ``ok``, ``rejected``,
                               ``errors``, ``by_code``, ``slo_s``, ``slo_attainment``,
                               ``admitted_fraction``, ``p50_s``, ``p99_s``, ``reject_p99_s``,
                               ``reject_sent_p99_s``,
                               ``rate_planned``, ``rate_sent`` (as above, for that app)
``timeline``                   one entry per window of scheduled time: ``t_s`` (window
                               start), ``sent``, ``ok``, ``rejected``, ``errors``, ``p99_s``
                               (ok answers), ``instances`` (most seen by the polls at the
                               window's start and end; ``null`` if none answered)
=============================  =============================================================

Cost and CPU deltas assume the load generator is the gateway's only client during
the run; a plan change during the run (``epochs`` differ) makes the prediction the
one of the plan served at the start.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

NOT_SENT = 0
"""Status of a request that was never sent (the run was interrupted first)."""
TIMEOUT, CONNECT, DISCONNECTED, CLIENT, CANCELLED = -1, -2, -3, -4, -5
CLIENT_ERRORS = {
    TIMEOUT: "timeout",  # no full answer within --timeout
    CONNECT: "connect",  # connection refused or failed
    DISCONNECTED: "disconnected",  # the server closed the connection before answering
    CLIENT: "client",  # any other client-side HTTP failure (bad answer framing, ...)
    CANCELLED: "cancelled",  # still outstanding when an interrupted run stopped waiting
}
"""Client-side outcomes: negative status codes, each its own ``by_code`` category."""
REJECTED = 503
MAX_TABLE_APPS = 50
"""Apps shown in the human table (all of them are in ``--json``)."""
MAX_PLOT_APPS = 8
"""Up to this many apps the plot draws one line per app; beyond, the totals."""


@dataclass
class Measurement:
    """One load run: a record per scheduled request, and the gateway's counters.

    Invariant: the request arrays have one entry per scheduled request, in order of
    scheduled time; ``status`` is an HTTP code (>= 100), a client error (< 0, see
    :data:`CLIENT_ERRORS`) or :data:`NOT_SENT`, and ``latency_s``/``late_s`` are NaN
    exactly where it is NOT_SENT.
    """

    target: str  # base URL
    apps: list[str]  # app names; ``app`` indexes this list
    slos: dict[str, float]  # latency SLO per app (s), from the served plan
    planned_rates: dict[str, float]  # req/s per app, after --rate-scale
    sched_s: np.ndarray  # float64: scheduled send time (s from the start), ascending
    app: np.ndarray  # int32: index into ``apps``
    status: np.ndarray  # int32: HTTP status, a CLIENT_ERRORS code, or NOT_SENT
    latency_s: np.ndarray  # float64: end of answer − scheduled send time (s)
    late_s: np.ndarray  # float64: actual send − scheduled send time (s)
    duration_s: float  # trace length (s)
    sent_until_s: float  # sending stopped here (== duration_s unless interrupted)
    elapsed_s: float  # wall time from the first send to the last answer (s)
    interrupted: bool  # stopped early (Ctrl-C or SIGTERM)
    window_s: float
    polls: list[tuple[float, int | None]] = field(default_factory=list)  # (t_s, instances)
    poll_errors: int = 0
    stats_before: dict[str, Any] | None = None  # /v1/stats
    stats_after: dict[str, Any] | None = None
    plan_before: dict[str, Any] | None = None  # /v1/plan
    plan_after: dict[str, Any] | None = None
    loadgen_cpu_s: float = 0.0  # this process's CPU seconds during the run
    settings: dict[str, Any] = field(default_factory=dict)  # traces, seed, rate_scale, timeout_s
    warnings: list[str] = field(default_factory=list)
    stop_signal: int | None = None  # the signal that stopped the run, if one did


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _q(x: np.ndarray, q: float) -> float | None:
    return _r(float(np.quantile(x, q))) if len(x) else None


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _split(keys: np.ndarray, n: int, *arrays: np.ndarray) -> list[list[np.ndarray]]:
    """Rows of each array grouped by integer key ``0..n-1`` (one sort, not n masks)."""
    order = np.argsort(keys, kind="stable")
    cuts = np.cumsum(np.bincount(keys, minlength=n))[:-1]
    return [np.split(a[order], cuts) for a in arrays]


def _counts(status: np.ndarray, latency: np.ndarray, late: np.ndarray,
            slo: float | None) -> dict[str, Any]:  # fmt: skip
    """The per-app (or total) fields over one slice of requests."""
    sent = status != NOT_SENT
    ok = (status >= 200) & (status < 300)
    rej = status == REJECTED
    other = sent & ~ok & ~rej
    codes, counts = np.unique(status[other], return_counts=True)
    by_code = {
        CLIENT_ERRORS.get(int(c), str(int(c))): int(k) for c, k in zip(codes, counts, strict=True)
    }
    requests, n_ok, n_rej = int(sent.sum()), int(ok.sum()), int(rej.sum())
    admitted = requests - n_rej
    met = int((ok & (latency <= slo)).sum()) if slo is not None else None
    return {
        "scheduled": len(status),
        "requests": requests,
        "ok": n_ok,
        "rejected": n_rej,
        "errors": int(other.sum()),
        "by_code": by_code,
        "slo_s": slo,
        "slo_met": met,  # internal: summed for the totals, then dropped
        "slo_attainment": _r(_ratio(met, admitted)) if met is not None else None,
        "admitted_fraction": _r(_ratio(admitted, requests)),
        "p50_s": _q(latency[ok], 0.5),
        "p99_s": _q(latency[ok], 0.99),
        "reject_p99_s": _q(latency[rej], 0.99),
        "reject_sent_p99_s": _q(latency[rej] - late[rej], 0.99),
    }


def _cost(m: Measurement) -> float | None:
    def total(stats: dict[str, Any] | None) -> float | None:
        if stats is None:
            return None
        return float(sum(g.get("cost", 0.0) for g in stats.get("groups", {}).values()))

    before, after = total(m.stats_before), total(m.stats_after)
    return None if before is None or after is None else after - before


def _cpu(m: Measurement) -> float | None:
    if m.stats_before is None or m.stats_after is None:
        return None
    return float(m.stats_after["cpu_s"]) - float(m.stats_before["cpu_s"])


def plan_instances(plan_doc: Any) -> int | None:
    """Instances over all groups in a ``/v1/plan`` document (None: not one)."""
    try:
        return int(sum(g["instances"] for g in plan_doc["groups"]))
    except (KeyError, TypeError, ValueError):
        return None


def n_windows(m: Measurement) -> int:
    return max(1, math.ceil(m.sent_until_s / m.window_s - 1e-9))


def _window_index(m: Measurement) -> np.ndarray:
    return np.minimum((m.sched_s // m.window_s).astype(np.int64), n_windows(m) - 1)


def window_instances(m: Measurement) -> list[int | None]:
    """Most instances seen by the polls at each window's start and end (None: no answer).

    A poll at ``t`` counts for every window ``k`` with ``k w - w/2 <= t <= (k + 1) w + w/2``
    (polls run just after each window boundary), i.e. at most three windows.
    """
    w, nw = m.window_s, n_windows(m)
    best = [-1] * nw
    for t, n in m.polls:
        if n is None:
            continue
        lo, hi = max(0, math.ceil(t / w - 1.5)), min(nw - 1, math.floor(t / w + 0.5))
        for k in range(lo, hi + 1):
            best[k] = max(best[k], n)
    return [None if b < 0 else b for b in best]


def window_series(m: Measurement, per_app: bool) -> dict[str, np.ndarray]:
    """Counts and ok-p99 per window: arrays ``[windows]``, or ``[apps, windows]``."""
    nw = n_windows(m)
    sent = m.status != NOT_SENT
    win = _window_index(m)
    key = (m.app.astype(np.int64) * nw + win) if per_app else win
    n = nw * (len(m.apps) if per_app else 1)
    ok = (m.status >= 200) & (m.status < 300)
    rej = m.status == REJECTED

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(key[mask], minlength=n)

    (lat_groups,) = _split(key[ok], n, m.latency_s[ok])
    p99 = np.array([np.quantile(g, 0.99) if len(g) else np.nan for g in lat_groups])
    shape = (len(m.apps), nw) if per_app else (nw,)
    series = {
        "sent": count(sent),
        "ok": count(ok),
        "rejected": count(rej),
        "errors": count(sent & ~ok & ~rej),
        "p99_s": p99,
    }
    return {k: v.reshape(shape) for k, v in series.items()}


def _timeline(m: Measurement) -> list[dict[str, Any]]:
    s = window_series(m, per_app=False)
    inst = window_instances(m)
    return [
        {
            "t_s": _r(k * m.window_s),
            "sent": int(s["sent"][k]),
            "ok": int(s["ok"][k]),
            "rejected": int(s["rejected"][k]),
            "errors": int(s["errors"][k]),
            "p99_s": _r(float(s["p99_s"][k])),
            "instances": inst[k],
        }
        for k in range(n_windows(m))
    ]


def _per_app(m: Measurement) -> dict[str, dict[str, Any]]:
    status_groups, lat_groups, late_groups = _split(m.app, len(m.apps), m.status, m.latency_s,
                                                    m.late_s)  # fmt: skip
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(m.apps):
        row = _counts(status_groups[k], lat_groups[k], late_groups[k], m.slos.get(name))
        row["rate_planned"] = _r(m.planned_rates.get(name))
        row["rate_sent"] = _r(_ratio(row["requests"], m.sent_until_s))
        out[name] = row
    return out


def _totals(m: Measurement, apps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tot = _counts(m.status, m.latency_s, m.late_s, None)
    met = [a["slo_met"] for a in apps.values()]
    admitted = tot["requests"] - tot["rejected"]
    if all(x is not None for x in met):
        tot["slo_attainment"] = _r(_ratio(sum(met), admitted))
    tot["rate_planned"] = _r(sum(m.planned_rates.values()))
    tot["rate_sent"] = _r(_ratio(tot["requests"], m.sent_until_s))
    return tot


def summarize(m: Measurement) -> dict[str, Any]:
    """The ``--json`` report (fields: the table in this module's docstring)."""
    apps = _per_app(m)
    tot = _totals(m, apps)
    for row in (*apps.values(), tot):
        row.pop("slo_met")
    sent = m.status != NOT_SENT
    cost, cpu = _cost(m), _cpu(m)
    plan = (m.plan_before or {}).get("plan", {})
    seen = [n for _, n in m.polls if n is not None]
    seen += [
        n for n in (plan_instances(m.plan_before), plan_instances(m.plan_after)) if n is not None
    ]
    report: dict[str, Any] = {
        "target": m.target,
        **m.settings,
        "window_s": m.window_s,
        "interrupted": m.interrupted,
        "duration_s": _r(m.sent_until_s),
        "elapsed_s": _r(m.elapsed_s),
        **tot,
        "sent_late_p99_s": _q(m.late_s[sent], 0.99),
        "cost_per_request_measured": _ratio(cost, tot["ok"]) if cost is not None else None,
        "cost_per_request_predicted": plan.get("expected_cost_per_request"),
        "currency": plan.get("currency") or (m.stats_before or {}).get("currency"),
        "cpu_s_per_1000": _r(_ratio(1000 * cpu, tot["requests"])) if cpu is not None else None,
        "loadgen_cpu_s_per_1000": _r(_ratio(1000 * m.loadgen_cpu_s, tot["requests"])),
        "instances_max": max(seen, default=None),
        "epochs": [(d or {}).get("epoch") for d in (m.plan_before, m.plan_after)],
        "poll_errors": m.poll_errors,
        "warnings": list(m.warnings),
        "plot": None,
        "records": None,
        "apps": apps,
        "timeline": _timeline(m),
    }
    return report


# -- human output -----------------------------------------------------------------------------
def _f(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


COLUMNS = ("app", "sent", "ok", "503", "errors", "SLO s", "SLO met", "p50 s", "p99 s", "req/s")
"""The table's columns (admitted fraction and 503 latency are in the summary and --json)."""


def _row(name: str, r: dict[str, Any]) -> list[Text]:
    cells = [name, str(r["requests"]), str(r["ok"]), str(r["rejected"]), str(r["errors"]),
             _f(r["slo_s"], "g"), _pct(r["slo_attainment"]), _f(r["p50_s"], ".3f"),
             _f(r["p99_s"], ".3f"), _f(r["rate_sent"], ".1f")]  # fmt: skip
    return [Text(c) for c in cells]


def report_table(report: dict[str, Any]) -> Table:
    """Per-app rows and a total row; every cell is plain text (app names are not markup)."""
    title = (f"Load on {report['target']}: {report['requests']} requests in "
             f"{report['duration_s']:g} s, SLO met {_pct(report['slo_attainment'])}"
             + (" (interrupted)" if report["interrupted"] else ""))  # fmt: skip
    t = Table(title=Text(title))
    for col in COLUMNS:
        if col == "app":
            t.add_column(col, justify="left", overflow="fold")
        else:
            t.add_column(col, justify="right", no_wrap=True)
    apps = list(report["apps"].items())
    for name, row in apps[:MAX_TABLE_APPS]:
        t.add_row(*_row(name, row))
    t.add_row(*_row("all", report), style="bold")
    if len(apps) > MAX_TABLE_APPS:
        t.caption = Text(f"… {len(apps) - MAX_TABLE_APPS} more apps (see --json)")
    return t


def summary_lines(report: dict[str, Any]) -> list[str]:
    cur = report["currency"] or ""
    lines = [
        f"sent {report['requests']} of {report['scheduled']} scheduled at "
        f"{_f(report['rate_sent'], '.1f')} req/s (planned {_f(report['rate_planned'], '.1f')}); "
        f"sent late p99 {_f(report['sent_late_p99_s'], '.4f')} s",
        f"cost per ok request: measured {_f(report['cost_per_request_measured'], '.4e')} {cur}, "
        f"predicted {_f(report['cost_per_request_predicted'], '.4e')} {cur}",
        "CPU-seconds per 1000 requests: gateway + instances "
        f"{_f(report['cpu_s_per_1000'], '.3f')}, "
        f"load generator {_f(report['loadgen_cpu_s_per_1000'], '.3f')}",
        f"instances: at most {_f(report['instances_max'], 'd')}; admitted "
        f"{_pct(report['admitted_fraction'])} of requests sent"
        + (f", 503 answers p99 {report['reject_p99_s']:.4f} s" if report["rejected"] else ""),
    ]
    if report["by_code"]:
        lines.append("errors: " + ", ".join(f"{k}: {v}" for k, v in report["by_code"].items()))
    if report["interrupted"]:
        not_sent = report["scheduled"] - report["requests"]
        lines.append(f"interrupted after {report['duration_s']:g} s: "
                     f"{not_sent} scheduled requests not sent")  # fmt: skip
    lines += [f"warning: {w}" for w in report["warnings"]]
    return lines


def print_report(report: dict[str, Any], console: Console) -> None:
    console.print(report_table(report))
    for line in summary_lines(report):
        console.print(line, markup=False, highlight=False)


# -- the PNG ----------------------------------------------------------------------------------
def _series_labels(m: Measurement) -> tuple[bool, list[str], list[float | None]]:
    if len(m.apps) <= MAX_PLOT_APPS:
        return True, list(m.apps), [m.slos.get(a) for a in m.apps]
    return False, ["all apps"], [min(m.slos.values(), default=None)]


RECORD_FIELDS = ("sched_s", "app", "status", "latency_s", "sent_late_s")


def write_records(m: Measurement, path: str | Path) -> Path:
    """Every scheduled request as a CSV row (:data:`RECORD_FIELDS`), in scheduled order.

    Why: a report's percentiles say how many requests were late, not which, when or by
    how much; the rows let a user find out (late ones bunched after a burst, one app's
    refusals, the generator's own lateness), as vegeta's and k6's result files do."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(RECORD_FIELDS)
        columns = (m.sched_s, m.app, m.status, m.latency_s, m.late_s)
        for t, a, code, lat, late in zip(*(c.tolist() for c in columns), strict=True):
            status = ("not_sent" if code == NOT_SENT
                      else CLIENT_ERRORS.get(code, str(code)))  # fmt: skip
            out.writerow((f"{t:.6f}", m.apps[a], status,
                          "" if math.isnan(lat) else f"{lat:.6f}",
                          "" if math.isnan(late) else f"{late:.6f}"))  # fmt: skip
    return path


def plot_timeline(m: Measurement, path: str | Path, title: str = "") -> Path:
    """Three panels over time: sent rate + instances, ok-p99 with SLOs, rejections."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from batchwise.outputs import save_figure

    per_app, labels, slos = _series_labels(m)
    s = window_series(m, per_app)
    rows = (lambda k: {n: v[k] for n, v in s.items()}) if per_app else (lambda _k: s)
    nw = n_windows(m)
    x = (np.arange(nw) + 0.5) * m.window_s
    fig = Figure(figsize=(9, 8), layout="constrained")
    ax_rate, ax_lat, ax_rej = fig.subplots(3, 1, sharex=True)
    for k, label in enumerate(labels):
        r = rows(k)
        (line,) = ax_rate.plot(x, r["sent"] / m.window_s, marker=".", label=label)
        ax_lat.plot(x, r["p99_s"], marker=".", color=line.get_color(), label=label)
        if slos[k] is not None:
            ax_lat.axhline(slos[k], color=line.get_color(), linestyle="--", linewidth=1)
        ax_rej.plot(x, r["rejected"], marker=".", color=line.get_color(), label=label)
    _instances_axis(ax_rate, m, x)
    errors = s["errors"].sum(axis=0) if per_app else s["errors"]
    if errors.any():
        ax_rej.plot(x, errors, color="grey", linestyle=":", label="other errors (all apps)")
    what = f"load on {m.target}" + (f": {title}" if title else "")
    ax_rate.set_title("\n".join([*textwrap.wrap(what, 90),
                                 f"requests sent per second, per {m.window_s:g} s window "
                                 "(dashed, right: instances)"]), fontsize=10)  # fmt: skip
    ax_rate.set_ylabel("sent (req/s)")
    ax_lat.set_title("p99 latency of ok answers per window (dashed: SLO)", fontsize=10)
    ax_lat.set_ylabel("p99 latency (s)")
    ax_lat.set_ylim(bottom=0)
    ax_rej.set_title("503 rejections per window (dotted: other errors)", fontsize=10)
    ax_rej.set_ylabel("requests per window")
    ax_rej.set_xlabel("scheduled time since start (s)")
    ax_rej.set_xlim(0, nw * m.window_s)
    # Counts: never below zero, whole numbers, and a visible axis when nothing was refused.
    ax_rej.set_ylim(0, max(ax_rej.get_ylim()[1], 1))
    ax_rej.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_rate, ax_lat, ax_rej):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    FigureCanvasAgg(fig)
    return save_figure(fig, path)


def _instances_axis(ax: Any, m: Measurement, x: np.ndarray) -> None:
    from matplotlib.ticker import MaxNLocator

    inst = np.array([np.nan if n is None else n for n in window_instances(m)], dtype=float)
    twin = ax.twinx()
    twin.step(x, inst, where="mid", color="black", linestyle="--", linewidth=1)
    twin.set_ylabel("instances (all groups)")
    top = np.nanmax(inst) if np.isfinite(inst).any() else 1.0
    twin.set_ylim(0, top + 1)
    twin.yaxis.set_major_locator(MaxNLocator(integer=True))


def trace_title(traces: Sequence[str], rate_scale: float) -> str:
    """What drove the load, for the plot's title."""
    return f"{', '.join(traces)} at {rate_scale:g}× the planned rates"
