"""``batchwise profile`` and ``batchwise serve`` through the real entry point and processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.http as tc

from batchwise.cli import main
from batchwise.config.profiles import load_profiles
from batchwise.errors import ConfigError
from batchwise.resources.cpu_quota import CGROUP_V1, CGROUP_V2, CpuQuota, detect
from batchwise.serving.setup import prepare

SLEEP = '{"base_s": 0.005, "per_item_s": 0.001}'
GRID = [
    "--batch-sizes",
    "1,2,4",
    "--vcpus",
    "0.2,0.4,0.6",
    "--repeats",
    "3",
    "--min-cell-seconds",
    "0",
]


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_profile_writes_a_profile_that_plan_accepts(tmp_path, capsys):
    """Cells of short batches are timed past --repeats until they add up to
    --min-cell-seconds (a throttled quota's batch time depends on the period's phase)."""
    out = tmp_path / "sleep.yaml"
    grid = [*GRID[:-1], "0.08"]
    code, stdout, _ = _run_cli(["profile", "sleep", "--options", SLEEP, *grid, "-o", str(out),
                                "--json"], capsys)  # fmt: skip
    assert code == 0
    doc = json.loads(stdout)
    assert doc["cpu_quota"] in ("cgroup-v1", "cgroup-v2", "duty-cycle")
    assert len(doc["points"]) == 9 and doc["batch_sizes"] == [1, 2, 4]
    for pt in doc["points"]:  # each batch takes 6-9 ms (more where throttled)
        assert pt["samples"] > 3 and pt["samples"] * pt["mean_s"] >= 0.08 - 1e-9, pt
        assert pt["samples"] * pt["mean_s"] < 0.08 + 2 * pt["p99_s"] + 0.05, pt
    # The sleep model takes 5 ms + 1 ms per item whatever its allotment: the fit says so.
    p = {(pt["batch"], pt["vcpu"]): pt for pt in doc["points"]}
    assert 0.004 < p[(1, 0.6)]["mean_s"] < 0.05 and p[(4, 0.6)]["mean_s"] > p[(1, 0.6)]["mean_s"]
    assert all(abs(pt["avg_error"]) < 0.5 for pt in doc["points"])
    prof = load_profiles(out)["sleep"]
    assert prof.cpu is not None and prof.cpu.max_batch == 4
    apps = tmp_path / "apps.yaml"
    apps.write_text(f"model: sleep\nprofiles: {out}\nprices: local\n"
                    "apps:\n  - {name: a, slo: 0.3, rate: 20}\n")  # fmt: skip
    code, stdout, _ = _run_cli(["plan", str(apps), "--json"], capsys)
    assert code == 0 and json.loads(stdout)["groups"][0]["function"]["kind"] == "cpu"


def test_profile_keeps_whole_vcpu_cells_and_measures_their_idle_slowdown(tmp_path, capsys):
    """The sleep model sleeps as long after an idle spell as back to back: its factors
    stay near 1 (a factor counting the profiler's own 200 ms sleep would be ~30). Only
    the 1-vCPU allotment is probed (0.4 and 0.7 refill their quota while idle)."""
    out = tmp_path / "sleep.yaml"
    code, stdout, _ = _run_cli(["profile", "sleep", "--options", SLEEP, "--batch-sizes", "1,4",
                                "--vcpus", "0.4,0.7,1", "--repeats", "3", "-o", str(out),
                                "--json"], capsys)  # fmt: skip
    assert code == 0
    points = json.loads(stdout)["idle_slowdown"]
    assert [(p["threads"], p["batch"]) for p in points] == [(1, 1), (1, 4)]
    assert all(1.0 <= p["factor"] < 1.5 for p in points), points
    cpu = load_profiles(out)["sleep"].cpu
    slow = cpu.idle_slowdown
    assert slow is not None and slow.after_s > 0 and len(slow.points) == 2
    # The whole-vCPU cells as measured (the simulator's work at full speed): 5 + 1 ms/item.
    (curve,) = [c for c in cpu.measured if c.unthrottled]
    assert curve.threads == 1 and curve.batch == [1, 4]
    assert 0.005 < curve.avg_s[0] < 0.03 and curve.avg_s[1] > curve.avg_s[0]
    assert "ms idle" in out.read_text()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--batch-sizes", "2,4"], "--batch-sizes"),
        (["--vcpus", "0.5,1"], "--vcpus"),
        (["--vcpus", "0.5,1,999"], "--vcpus"),
        (["--options", "[1]"], "--options"),
        (["--options", '{"nope": 1}'], "--options"),
        (["--repeats", "1"], "--repeats"),
        (["--min-cell-seconds", "-1"], "--min-cell-seconds"),
    ],
)
def test_profile_refuses_bad_grids_before_starting_anything(args, field, capsys):
    code, _, err = _run_cli(["profile", "sleep", *args], capsys)
    assert code == 2 and field in err and "Traceback" not in err


def test_duty_cycle_is_the_fallback_and_is_reported(monkeypatch, capsys):
    monkeypatch.setenv("BATCHWISE_CPU_QUOTA", "duty-cycle")
    code, stdout, _ = _run_cli(["profile", "sleep", "--options", SLEEP, *GRID, "--json"], capsys)
    assert code == 0 and json.loads(stdout)["cpu_quota"] == "duty-cycle"


@pytest.mark.skipif(detect() not in (CGROUP_V1, CGROUP_V2), reason="no writable cgroup here")
def test_cgroup_quota_caps_a_busy_process():
    quota = CpuQuota.create("test-burn", 0.3)
    burn = "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass\ntime.sleep(5)\n"
    proc = subprocess.Popen([sys.executable, "-c", burn])
    try:
        quota.enter(proc.pid)
        time.sleep(2.0)  # it spun 1.5 s of wall time and now sleeps
        cpu = psutil.Process(proc.pid).cpu_times()
        assert cpu.user + cpu.system < 0.3 * 2.0 + 0.2, cpu  # ~0.6 s allowed, not 1.5
        assert quota.throttled_s() > 0.3
    finally:
        proc.kill()
        proc.wait()
        quota.remove()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sleep_apps(tmp_path: Path) -> Path:
    apps = tmp_path / "apps.yaml"
    apps.write_text(
        "model: sleep\n"
        f"runner: {{model: sleep, options: {SLEEP}}}\n"
        "apps:\n  - {name: chat, slo: 0.3, rate: 10}\n  - {name: batch, slo: 1.0, rate: 20}\n"
    )
    return apps


def test_serve_profiles_on_first_use_serves_tritonclient_and_drains_on_sigterm(tmp_path):
    port = _free_port()
    env = {**os.environ, "BATCHWISE_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "batchwise.cli", "serve", str(_sleep_apps(tmp_path)),
           "--port", str(port), "--plan-out", str(tmp_path / "plan.json")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        client = tc.InferenceServerClient(f"127.0.0.1:{port}")
        t_end = time.monotonic() + 120
        while time.monotonic() < t_end:
            try:
                if client.is_server_ready():
                    break
            except Exception:
                pass
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        inp = tc.InferInput("input", [2], "BYTES")
        inp.set_data_from_numpy(np.array([b"a", b"b"], dtype=object))
        assert client.infer("chat", [inp]).as_numpy("output").tolist() == [b"a", b"b"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/plan", timeout=10) as r:
            assert json.loads(r.read())["plan"]["profiles"].endswith(".yaml")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "profiling sleep" in err and "stopped on SIGTERM" in err and "Traceback" not in err
        assert json.loads((tmp_path / "plan.json").read_text())["groups"]
    finally:
        if proc.poll() is None:
            proc.kill()
    # Second start: the cached profile, no measuring.
    prepared = _prepare_with_cache(tmp_path)
    assert prepared.profile_source.startswith("cache:")


def _prepare_with_cache(tmp_path: Path):
    old = os.environ.get("BATCHWISE_CACHE")
    os.environ["BATCHWISE_CACHE"] = str(tmp_path / "cache")
    try:
        return prepare(str(_sleep_apps(tmp_path)))
    finally:
        if old is None:
            del os.environ["BATCHWISE_CACHE"]
        else:
            os.environ["BATCHWISE_CACHE"] = old


def test_serve_refuses_models_it_cannot_run(tmp_path, capsys):
    apps = tmp_path / "vgg.yaml"
    apps.write_text("model: VGG19\napps:\n  - {name: a, slo: 0.5, rate: 5}\n")
    code, _, err = _run_cli(["serve", str(apps)], capsys)
    assert code == 2 and "runner" in err and "Traceback" not in err


def test_a_gpu_plan_is_refused_on_a_machine_without_one(tmp_path):
    apps = tmp_path / "bert.yaml"
    apps.write_text(
        "model: Bert\nprofiles: harmonybatch\nprices: alibaba-fc-2023\n"
        "runner: {model: sleep}\napps:\n  - {name: a, slo: 0.3, rate: 200}\n"
    )
    with pytest.raises(ConfigError, match=r"--cpu-only|cores"):
        prepare(str(apps))


def test_serve_option_errors_are_one_line(tmp_path, capsys):
    apps = _sleep_apps(tmp_path)
    for args, field in [(["--port", "70000"], "--port"), (["--backend", "k8s"], "--backend"),
                        (["--max-body", "10"], "--max-body"),
                        (["--batch-order", "edf"], "--batch-order"),
                        (["--overload-share", "fair"], "--overload-share"),
                        (["--standby", "-1"], "--standby"),
                        (["--rate-floor", "1.5"], "--rate-floor"),
                        (["--rate-floor", "nan"], "--rate-floor")]:  # fmt: skip
        code, _, err = _run_cli(["serve", str(apps), *args], capsys)
        assert code == 2 and field in err, err
