"""Failure paths over real HTTP: body limits, tokens, killed instances, overload, shutdown."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest
from live import infer_body, run_load, sleep_gateway

from batchwise.serving.server import ServeOptions


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_body_over_limit_is_413_without_reading_it():
    with sleep_gateway([("a", 0.5, 10.0)], max_body=4096) as gw:
        code, doc = _post(f"{gw.url}/v2/models/a/infer", b"x" * 10_000)
        assert code == 413 and "limit" in doc["error"]
        # Declared small but streamed (chunked, no Content-Length) past the limit: still 413.
        conn = http.client.HTTPConnection(gw.host, gw.port, timeout=30)
        conn.putrequest("POST", "/v2/models/a/infer")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for _ in range(3):
            chunk = b"y" * 3000
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        assert resp.status == 413 and "error" in json.loads(resp.read())
        code, _ = _post(f"{gw.url}/v2/models/a/infer", infer_body())
        assert code == 200


def test_bearer_token_guards_everything_but_health():
    with sleep_gateway([("a", 0.5, 10.0)], token="s3cret") as gw:
        code, doc = _post(f"{gw.url}/v2/models/a/infer", infer_body())
        assert code == 401 and "token" in doc["error"]
        code, _ = _post(f"{gw.url}/v2/models/a/infer", infer_body(),
                        {"Authorization": "Bearer wrong"})  # fmt: skip
        assert code == 401
        code, _ = _post(f"{gw.url}/v2/models/a/infer", infer_body(),
                        {"Authorization": "Bearer s3cret"})  # fmt: skip
        assert code == 200
        with urllib.request.urlopen(f"{gw.url}/v2/health/ready", timeout=10) as r:
            assert r.status == 200


def test_instance_killed_mid_batch_loses_no_request():
    """Requests of a batch whose instance dies are retried elsewhere: all answered 200."""
    apps = [("a", 3.0, 20.0)]
    with sleep_gateway(apps, ServeOptions(instances=2), per_item_s=0.05) as gw:
        results: list[int] = []

        def client() -> None:
            code, _ = _post(f"{gw.url}/v2/models/a/infer", infer_body(4))
            results.append(code)

        threads = [threading.Thread(target=client) for _ in range(12)]
        for t in threads:
            t.start()
        pool = gw.server.groups[0].pool
        t_end = time.monotonic() + 10
        while not any(m.batch for m in pool.members.values()) and time.monotonic() < t_end:
            time.sleep(0.005)
        killed = pool.kill_one()
        assert killed is not None
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a request hung"
        assert results == [200] * 12
        assert pool.deaths >= 1
        t_end = time.monotonic() + 30  # a replacement is started
        while pool.ready_count() < 2 and time.monotonic() < t_end:
            time.sleep(0.05)
        assert pool.ready_count() == 2


def test_deadline_admission_under_3x_overload_keeps_admitted_requests_on_time():
    """One instance, offered 3x what it can serve: refusals are quick, admitted ones on time.

    The model is slow (20 ms per item) so that 3x its capacity is a rate this machine's
    two cores generate and parse with room to spare, and the load comes from
    ``batchwise load`` in its own process (a client sharing the gateway's GIL delays
    both): the test is about admission, not about how fast Python parses (bench/ is)."""
    slo, per_item, rate = 0.5, 0.02, 10.0
    with sleep_gateway([("a", slo, rate)], ServeOptions(instances=1, max_instances=1),
                       per_item_s=per_item) as gw:  # fmt: skip
        b = gw.server.groups[0].plan.batch_size
        capacity = b / (0.01 + per_item * b)
        report = run_load(gw.url, "--duration", "10", "--rate-scale", f"{3 * capacity / rate:.3f}")
    assert report["errors"] == 0, report["by_code"]
    assert report["ok"] + report["rejected"] == report["requests"]
    assert 0.4 < 1 - report["admitted_fraction"] < 0.8, report["admitted_fraction"]  # ~2/3
    # ~110 admitted requests in 10 s: one late one is 0.9 %. On this 2-core VM the same
    # code gives 97.5-100 % from one minute to the next (host neighbours; 7 runs in a
    # row passed at 99 %, then 3 of 5 did not, then 3 of 3 did), so the bound here is
    # 97 % — without admission nearly every request is late (test_instances' sim twin
    # and --no-admission) — and the 99 % goal is measured over thousands of requests in
    # bench/serving.py's overload runs (RESULTS §6e/§6f).
    assert report["slo_attainment"] >= 0.97, (report["p50_s"], report["p99_s"])
    assert report["apps"]["a"]["reject_p99_s"] < 0.1
    # from the actual send: never later than from the scheduled one (late >= 0)
    assert 0 <= report["reject_sent_p99_s"] <= report["reject_p99_s"]


def test_a_gateway_whose_loop_runs_late_refuses_before_parsing_then_recovers():
    """Loop 0.3 s behind (x2 hops) is over a quarter of the 0.5 s SLO: 503 at once."""
    with sleep_gateway([("a", 0.5, 10.0)]) as gw:
        tracker = gw.server.lag.tracker
        tracker._mean, tracker._at = 0.3, time.monotonic()  # as if it had been saturated
        req = urllib.request.Request(f"{gw.url}/v2/models/a/infer", data=infer_body(1))
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        assert exc.value.code == 503 and exc.value.headers["Retry-After"] == "1"
        assert "overloaded" in json.loads(exc.value.read())["error"]
        t_end = time.monotonic() + 10  # the average falls once the loop keeps up
        while tracker.value() > 0.03 and time.monotonic() < t_end:
            time.sleep(0.1)
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200


def test_stop_ends_every_instance_without_waiting_out_the_reap_timeout():
    # The plan's instance and its warm standby: two leave together on stop, and the
    # second one's exit was reaped by the first one's poll (it used to wait 10 s for it).
    gw = sleep_gateway([("a", 0.5, 5.0)]).start_thread()
    pool = gw.server.groups[0].pool
    t_end = time.monotonic() + 30
    while len(pool.members) < 2 and time.monotonic() < t_end:
        time.sleep(0.05)
    pids = pool.backend.pids()
    assert len(pids) >= 2, list(pool.members)
    for _ in range(5):
        assert _post(f"{gw.url}/v2/models/a/infer", infer_body(1))[0] == 200
    t0 = time.monotonic()
    gw.stop()
    assert time.monotonic() - t0 < 5.0
    assert pool.members == {} and pool.backend.names() == []
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]  # ended and reaped


def test_graceful_shutdown_answers_in_flight_requests():
    gw = sleep_gateway([("a", 5.0, 5.0)], per_item_s=0.2).start_thread()
    results: list[int] = []

    def client() -> None:
        code, _ = _post(f"{gw.url}/v2/models/a/infer", infer_body(2))
        results.append(code)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    gw.stop()
    for t in threads:
        t.join(timeout=30)
    assert results and set(results) <= {200}, results
    assert all(not t.is_alive() for t in threads)
