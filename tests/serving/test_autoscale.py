"""Scaling live: instances follow a step in load within seconds; a re-plan fails nothing."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from live import run_load, sleep_gateway

from batchwise.resources.cpu_quota import CGROUP_V1, CGROUP_V2, detect
from batchwise.serving.server import ServeOptions


def _history(gw) -> list[dict]:
    with urllib.request.urlopen(f"{gw.url}/v1/plan", timeout=10) as r:
        return json.loads(r.read())["history"]


def test_a_6x_step_is_absorbed_by_more_instances_within_seconds():
    # 10 ms + 10 ms per item: one instance serves ~80 items/s at batch 8; 6x of 20 req/s
    # needs two or more, which the plan (sized for 20 req/s) did not start.
    with sleep_gateway([("a", 1.0, 20.0)], per_item_s=0.01) as gw:
        assert gw.server.groups[0].pool.live_count() == 1
        report = run_load(gw.url, "--duration", "10", "--rate-scale", "6", "--window", "2")
        scale = [h for h in _history(gw) if h["action"] == "scale"]
        # up from the controller's signal, or at once: the warm standby promoted at the
        # first request admission would have refused
        assert scale and any(w in scale[0]["reason"] for w in ("busy", "standby promoted"))
        assert report["instances_max"] >= 2
        assert report["errors"] == 0
        # A step: the first second's requests are admitted on the replay's word before any
        # answer can correct it (CI once saw 98.5 %, the same code 100 % in three reruns);
        # the steady-state 99 % is the benchmark's (bench/serving.py).
        assert report["slo_attainment"] >= 0.98
        assert report["admitted_fraction"] >= 0.9  # admission bridged the first seconds
        # The last windows: the step absorbed — few refusals, and fewer than at the step.
        # (In CI on 2026-12-02 the last 4 s refused 4.9 %, where reruns refused none.)
        first, late = report["timeline"][0], report["timeline"][-2:]
        late_rate = sum(w["rejected"] for w in late) / max(1, sum(w["sent"] for w in late))
        assert late_rate <= 0.05
        assert late_rate <= max(0.01, first["rejected"] / max(1, first["sent"]))


def test_replanning_under_a_rate_change_switches_epochs_without_a_failed_request():
    with sleep_gateway([("a", 0.5, 10.0), ("b", 1.0, 10.0)], per_item_s=0.005,
                       replan_window_s=2.0) as gw:  # fmt: skip
        report = run_load(gw.url, "--duration", "9", "--rate-scale", "5", "--window", "3")
        history = _history(gw)
        switches = [h for h in history if h["action"] == "switch"]
        assert switches, [h["reason"] for h in history]
        assert gw.server.epoch >= 2
        assert report["errors"] == 0, report["by_code"]  # the switch fails nothing
        assert report["ok"] + report["rejected"] == report["requests"]
        # Two epochs' instances start while serving on two cores (with the load generator):
        # a transient, so a looser bound than the steady-state tests' 99 %.
        assert report["slo_attainment"] >= 0.95


@pytest.mark.skipif(detect() not in (CGROUP_V1, CGROUP_V2), reason="no writable cgroup here")
def test_a_group_held_below_its_load_surges_onto_the_free_vcpu_then_returns_to_its_plan():
    opts = ServeOptions(max_instances=1, scale_down_delay_s=1.0)
    with sleep_gateway([("a", 1.0, 20.0)], options=opts, per_item_s=0.01) as gw:
        g = gw.server.groups[0]
        planned = g.fn.vcpu
        member = next(iter(g.pool.members.values()))
        seen: list[float] = []
        stop = threading.Event()

        def sample() -> None:  # the quota the kernel enforces, while the load runs
            while not stop.wait(0.1):
                seen.append(member.quota.read_vcpu())

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        report = run_load(gw.url, "--duration", "6", "--rate-scale", "6")
        stop.set()
        t.join()
        surges = [h for h in _history(gw) if h["action"] == "surge"]
        assert surges and "wants more instances" in surges[0]["reason"], _history(gw)
        assert planned < 1.0 and max(seen) == pytest.approx(1.0)  # one thread: one core
        assert report["errors"] == 0
        deadline = time.monotonic() + 10
        while g.live_fn.vcpu != planned and time.monotonic() < deadline:
            time.sleep(0.2)
        assert g.live_fn.vcpu == planned and member.quota.read_vcpu() == pytest.approx(planned)
        assert "back to the plan" in _history(gw)[-1]["reason"]
