"""The load generator over real HTTP: a live sleep-model gateway, and a stand-in for stalls.

Runs are seconds long; the gateway in the live tests runs on a thread of this
process, the stand-in (``loadstub.py``) in its own process.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import typer
from live import sleep_gateway
from loadstub import stub_gateway
from rich.console import Console
from typer.testing import CliRunner

from batchwise.errors import ConfigError
from batchwise.loadgen import report as report_mod
from batchwise.loadgen.client import (
    SENTENCES,
    LoadOptions,
    check_target,
    request_bodies,
    run_load,
)
from batchwise.loadgen.command import load_command
from batchwise.loadgen.report import (
    CANCELLED,
    NOT_SENT,
    RECORD_FIELDS,
    TIMEOUT,
    Measurement,
    plot_timeline,
    print_report,
    summarize,
)
from batchwise.traces.base import ArrivalTrace
from batchwise.traces.spec import build_trace

APPS = [("a", 0.3, 20.0), ("[b]", 1.0, 30.0)]  # "[b]" is not rich markup in the table


@pytest.fixture(scope="module")
def gw():
    with sleep_gateway(APPS) as g:
        yield g


def _cli() -> typer.Typer:
    """The command as the CLI registers it: ``app.command("load")(load_command)``."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """batchwise (test)"""

    app.command("load")(load_command)
    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_accounted(r: dict) -> None:
    """Every request in exactly one category, per app and in total."""
    for row in (r, *r["apps"].values()):
        assert row["ok"] + row["rejected"] + row["errors"] == row["requests"], row
        assert sum(row["by_code"].values()) == row["errors"], row
    for key in ("scheduled", "requests", "ok", "rejected", "errors"):
        assert sum(a[key] for a in r["apps"].values()) == r[key], key
    assert sum(w["sent"] for w in r["timeline"]) == r["requests"]


# -- against the live gateway ---------------------------------------------------------------
def test_poisson_at_the_planned_rate_accounts_for_every_request(gw, tmp_path):
    m = run_load(LoadOptions(gw.url, duration_s=4.0, window_s=1.0, seed=3))
    r = summarize(m)
    planned = build_trace(["poisson"], {a: rate for a, _, rate in APPS}, 3, 4.0)
    assert r["scheduled"] == r["requests"] == planned.count() == len(m.sched_s)
    _assert_accounted(r)
    assert r["interrupted"] is False and r["warnings"] == []
    assert r["slo_attainment"] >= 0.95, r
    assert 0 < r["p50_s"] <= r["p99_s"]
    assert r["apps"]["a"]["slo_s"] == 0.3 and r["apps"]["[b]"]["rate_planned"] == 30.0
    assert r["cost_per_request_measured"] > 0 and r["cost_per_request_predicted"] > 0
    assert r["currency"] == "USD" and r["instances_max"] >= 1
    assert r["cpu_s_per_1000"] > 0 and r["loadgen_cpu_s_per_1000"] > 0
    assert len(r["timeline"]) == 4 and all(w["instances"] >= 1 for w in r["timeline"])
    json.dumps(r, allow_nan=False)
    console = Console(record=True, width=100)
    print_report(r, console)
    text = console.export_text()
    assert "[b]" in text and "SLO met" in text
    png = plot_timeline(m, tmp_path / "timeline.png", "poisson")
    assert png.stat().st_size > 10_000


def _documented() -> tuple[set[str], set[str], set[str]]:
    """Field names in report.py's docstring table: top level, per app, per window."""
    lines = (report_mod.__doc__ or "").splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("=====")]
    rows: list[tuple[str, str]] = []
    for line in lines[rules[1] + 1 : rules[2]]:  # the table body, between its 2nd and 3rd rule
        if line[:31].strip():
            rows.append((line[:31], line[31:]))
        elif line.strip():
            rows[-1] = (rows[-1][0], rows[-1][1] + " " + line.strip())
    names = {n for first, _ in rows for n in re.findall(r"``(\w+)``", first)}
    text = dict((re.findall(r"``(\w+)``", f)[0], t) for f, t in rows)
    per_app = set(re.findall(r"``(\w+)``", text["apps"]))
    per_window = set(re.findall(r"``(\w+)``", text["timeline"])) - {"null"}
    return names, per_app, per_window


def test_cli_json_has_exactly_the_documented_fields_and_writes_the_plot(gw, tmp_path):
    png, rows = tmp_path / "out" / "load.png", tmp_path / "out" / "requests.csv"
    res = CliRunner().invoke(_cli(), ["load", gw.url, "--duration", "3", "--window", "1", "--json",
                                      "--plot", str(png), "--records", str(rows)])  # fmt: skip
    assert res.exit_code == 0, (res.output, res.exception)
    r = json.loads(res.stdout)
    names, per_app, per_window = _documented()
    assert set(r) == names
    for row in r["apps"].values():
        assert set(row) == per_app
    for w in r["timeline"]:
        assert set(w) == per_window
    _assert_accounted(r)
    assert r["plot"] == str(png) and png.stat().st_size > 10_000
    assert r["records"] == str(rows)
    with rows.open() as f:
        got = list(csv.DictReader(f))
    assert len(got) == r["scheduled"] and set(got[0]) == set(RECORD_FIELDS)
    assert [float(g["sched_s"]) for g in got] == sorted(float(g["sched_s"]) for g in got)
    for app, row in r["apps"].items():  # the rows add up to the report, app by app
        mine = [g for g in got if g["app"] == app]
        assert len(mine) == row["scheduled"]
        assert sum(g["status"] == "200" for g in mine) == row["ok"]
        assert sum(g["status"] == "503" for g in mine) == row["rejected"]
        ok = sorted(float(g["latency_s"]) for g in mine if g["status"] == "200")
        assert ok and all(float(g["sent_late_s"]) > -0.001 for g in mine)
    assert "load " in res.stderr and "sent" in res.stderr  # progress, one line per window


def test_token_is_required_and_sent(tmp_path):
    with sleep_gateway([("a", 0.5, 5.0)], token="s3cret") as g:
        with pytest.raises(ConfigError, match="--token"):
            run_load(LoadOptions(g.url, duration_s=1.0))
        res = CliRunner().invoke(_cli(), ["load", g.url, "--duration", "1", "--json"],
                                 env={"BATCHWISE_TOKEN": "s3cret"})  # fmt: skip
    assert res.exit_code == 0, (res.output, res.exception)
    r = json.loads(res.stdout)
    assert r["ok"] == r["requests"] > 0, r["by_code"]


# -- latency from the scheduled time --------------------------------------------------------
def _trace(times: list[float], duration_s: float) -> ArrivalTrace:
    return ArrivalTrace({"x": np.array(times)}, duration_s)


def test_a_stalled_server_shows_in_latency_from_the_scheduled_time():
    """A server that answers one request at a time, 0.25 s each; sends are every 0.05 s.

    Open loop: all eight go out on time, so the k-th waits for the k before it and
    its latency is about 0.25 (k + 1) - 0.05 k. A closed-loop client would have
    measured 0.25 s for each (and sent them late).
    """
    times = [0.05 * k for k in range(8)]
    with stub_gateway("--serial", "--delay", "0.25") as url:
        m = run_load(LoadOptions(url, window_s=1.0), trace=_trace(times, 1.0))
    r = summarize(m)
    assert r["ok"] == r["requests"] == 8
    assert r["sent_late_p99_s"] < 0.1
    expected = np.array([0.25 * (k + 1) - 0.05 * k for k in range(8)])
    lat = m.latency_s
    assert np.all(lat >= expected - 0.03), lat
    assert lat[-1] > 1.5 and r["p99_s"] > 1.5


def test_a_late_send_counts_against_latency():
    """The generator's own loop blocked 0.4 s at t = 1 s: those requests are late, and slow."""

    def block_once(p) -> None:
        if not block_once.done:
            block_once.done = True
            time.sleep(0.4)

    block_once.done = False
    times = list(np.arange(0.0, 2.0, 0.02))
    with stub_gateway() as url:
        m = run_load(LoadOptions(url, window_s=1.0), trace=_trace(times, 2.0),
                     on_progress=block_once)  # fmt: skip
    r = summarize(m)
    assert r["ok"] == len(times)
    assert np.all(m.latency_s >= m.late_s)
    assert np.nanmax(m.late_s) > 0.3 and np.max(m.latency_s) > 0.3
    during = (m.sched_s > 1.05) & (m.sched_s < 1.3)
    assert np.all(m.latency_s[during] > 0.1)  # the server answers in ~2 ms


def test_sustains_1000_requests_per_second_open_loop():
    with stub_gateway("--rate", "1000") as url:
        m = run_load(LoadOptions(url, duration_s=2.0, window_s=1.0))
    r = summarize(m)
    assert 1700 < r["requests"] < 2300
    assert r["ok"] == r["requests"], r["by_code"]
    assert r["sent_late_p99_s"] < 0.5, r["sent_late_p99_s"]


# -- stopping early -------------------------------------------------------------------------
def test_stop_reports_what_was_measured():
    with stub_gateway("--rate", "50") as url:
        m = run_load(
            LoadOptions(url, duration_s=20.0, window_s=1.0),
            engine_ready=lambda e: threading.Timer(1.0, e.request_stop).start(),
        )
    r = summarize(m)
    assert r["interrupted"] is True
    assert 0.9 < r["duration_s"] < 2.0
    assert 0 < r["requests"] < r["scheduled"]
    _assert_accounted(r)
    assert r["ok"] == r["requests"]
    assert len(r["timeline"]) <= 2


@pytest.mark.parametrize(("sig", "rc"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_prints_the_partial_json_report_and_exits_128_plus_the_signal(sig, rc):
    code = ("import typer, sys; from batchwise.loadgen.command import load_command; "
            "app = typer.Typer(); app.command()(load_command); "
            "app(sys.argv[1:], standalone_mode=True)")  # fmt: skip
    with stub_gateway("--rate", "50") as url:
        proc = subprocess.Popen([sys.executable, "-c", code, url, "--duration", "30",
                                 "--window", "1", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first progress line: the load is running
        assert line.startswith("load "), line
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == rc, err
    r = json.loads(out)
    assert r["interrupted"] is True and 0 < r["requests"] < r["scheduled"]
    _assert_accounted(r)


# -- refused before any load ----------------------------------------------------------------
@pytest.mark.parametrize(
    "url", ["http://example.com:8000", "10.1.2.3:8000", "http://[2001:db8::1]/"]
)
def test_a_remote_target_needs_allow_remote(url):
    with pytest.raises(ConfigError, match="--allow-remote"):
        check_target(url, allow_remote=False)
    assert check_target(url, allow_remote=True).startswith("http://")


def test_loopback_targets_are_accepted_as_they_are():
    assert check_target("127.0.0.1:8000/", False) == "http://127.0.0.1:8000"
    assert check_target("http://localhost:1", False) == "http://localhost:1"
    assert check_target("http://[::1]:9/gw/", False) == "http://[::1]:9/gw"
    with pytest.raises(ConfigError, match="http"):
        check_target("ftp://127.0.0.1/", False)


def test_nothing_listening_is_one_clear_error():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ConfigError, match="cannot reach the gateway"):
        run_load(LoadOptions(url, duration_s=1.0))
    res = CliRunner().invoke(_cli(), ["load", url, "--duration", "1"])
    assert isinstance(res.exception, ConfigError) and "cannot reach" in str(res.exception)


def test_a_gateway_that_is_not_ready_is_refused():
    with stub_gateway("--not-ready") as url, pytest.raises(ConfigError, match="not ready"):
        run_load(LoadOptions(url, duration_s=1.0))


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--duration", "0.5"], "--duration"),
        (["--duration", "1e6"], "--duration"),
        (["--rate-scale", "0"], "--rate-scale"),
        (["--rate-scale", "nan"], "--rate-scale"),
        (["--window", "0.1"], "--window"),
        (["--timeout", "0"], "--timeout"),
        (["--seed", "-1"], "--seed"),
        (["--trace", "poisson:x"], "poisson"),
        (["--plot", "x.txt"], "--plot"),
        (["--records", "x.png"], "--records"),
    ],
)
def test_bad_options_are_refused_before_contacting_the_gateway(args, field):
    url = f"http://127.0.0.1:{_free_port()}"  # nothing there: reaching it would say so
    res = CliRunner().invoke(_cli(), ["load", url, *args])
    assert isinstance(res.exception, ConfigError), res.output
    assert field in str(res.exception) and "cannot reach" not in str(res.exception)


def test_plot_in_a_folder_that_cannot_exist_is_refused_first(tmp_path):
    (tmp_path / "file").write_text("")
    url = f"http://127.0.0.1:{_free_port()}"
    res = CliRunner().invoke(_cli(), ["load", url, "--plot", str(tmp_path / "file" / "x.png")])
    assert isinstance(res.exception, ConfigError)
    assert "--plot" in str(res.exception) and "not a directory" in str(res.exception)


# -- request bodies and the report, without HTTP --------------------------------------------
def test_request_bodies_follow_the_metadata_deterministically():
    meta = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [-1]}]}
    bodies = request_bodies("a", meta, seed=1)
    assert len(bodies) == len(set(bodies)) == SENTENCES
    assert bodies == request_bodies("a", meta, seed=1) != request_bodies("a", meta, seed=2)
    (tensor,) = json.loads(bodies[0])["inputs"]
    assert tensor["shape"] == [1] and len(tensor["data"][0].split()) == 12
    numeric = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]},
                          {"name": "m", "datatype": "BOOL", "shape": [2]}]}  # fmt: skip
    (body,) = request_bodies("n", numeric, seed=0)
    x, mask = json.loads(body)["inputs"]
    assert x == {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}
    assert mask["data"] == [False, False]
    with pytest.raises(ConfigError, match="datatype"):
        request_bodies("n", {"inputs": [{"name": "x", "datatype": "COMPLEX", "shape": [1]}]}, 0)
    with pytest.raises(ConfigError, match="no inputs"):
        request_bodies("n", {"inputs": []}, 0)


def test_summary_puts_every_outcome_in_one_category():
    status = np.array([200, 200, 200, 503, 500, TIMEOUT, CANCELLED, 200, NOT_SENT], np.int32)
    latency = np.array([0.1, 0.2, 0.9, 0.01, 0.05, 30.0, 1.0, 0.3, np.nan])
    m = Measurement(
        target="http://127.0.0.1:1", apps=["p", "q"], slos={"p": 0.5, "q": 1.0},
        planned_rates={"p": 2.0, "q": 1.0},
        sched_s=np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 3.9]),
        app=np.array([0, 0, 0, 0, 0, 1, 1, 1, 1], np.int32), status=status,
        latency_s=latency, late_s=np.where(status == NOT_SENT, np.nan, 0.001),
        duration_s=4.0, sent_until_s=3.8, elapsed_s=34.0, interrupted=True, window_s=2.0,
        polls=[(0.0, 1), (2.0, 3), (3.8, None)],
        stats_before={"cpu_s": 1.0, "groups": {"g0": {"cost": 0.5}}},
        stats_after={"cpu_s": 2.6, "groups": {"g0": {"cost": 0.9}}},
        plan_before={"epoch": 1, "plan": {"currency": "EUR", "expected_cost_per_request": 0.1}},
        plan_after={"epoch": 2}, loadgen_cpu_s=0.8,
    )  # fmt: skip
    r = summarize(m)
    p, q = r["apps"]["p"], r["apps"]["q"]
    assert (p["requests"], p["ok"], p["rejected"], p["errors"]) == (5, 3, 1, 1)
    assert p["by_code"] == {"500": 1}
    assert p["slo_attainment"] == 0.5  # 2 of 3 ok within 0.5 s, of 4 admitted
    assert p["admitted_fraction"] == 0.8
    assert (q["scheduled"], q["requests"], q["ok"], q["errors"]) == (4, 3, 1, 2)
    assert q["by_code"] == {"timeout": 1, "cancelled": 1}
    assert (
        r["requests"] == 8
        and r["scheduled"] == 9
        and r["slo_attainment"] == pytest.approx(3 / 7, abs=1e-6)
    )
    assert r["cost_per_request_measured"] == pytest.approx(0.4 / 4)
    assert r["cpu_s_per_1000"] == pytest.approx(200.0) and r["currency"] == "EUR"
    assert r["instances_max"] == 3 and r["epochs"] == [1, 2]
    assert [w["sent"] for w in r["timeline"]] == [4, 4]
    assert [w["instances"] for w in r["timeline"]] == [3, 3]
    assert r["timeline"][1]["p99_s"] == pytest.approx(0.3)
    _assert_accounted(r)
