"""The simulate and demo commands, run as a user runs them (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCHWISE = Path(sys.executable).with_name("batchwise")


def run(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BATCHWISE), *args], cwd=cwd, capture_output=True, text=True, timeout=400,
        env=env,
    )  # fmt: skip


def test_plan_then_simulate_json_with_replan_and_plots(tmp_path):
    plan_file = tmp_path / "plan.json"
    r = run("plan", "examples/vgg19-table1.yaml", "-o", str(plan_file))
    assert r.returncode == 0, r.stderr
    png = tmp_path / "cdf.png"
    r = run(
        "simulate", str(plan_file), "--trace", "poisson", "--duration", "240",
        "--replan", "--window", "60", "--plot", str(png), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"trace", "static", "replan", "plots"}
    static = out["static"]
    assert static["requests"] > 5000
    assert static["slo_violation_rate"] == 0.0
    assert set(static["apps"]) == {"app1", "app2", "app3"}
    for app in static["apps"].values():
        assert app["p50_latency_s"] <= app["p99_latency_s"] <= app["slo_s"]
    assert len(out["replan"]["windows"]) == 4
    assert png.stat().st_size > 5_000
    assert Path(out["plots"][1]).name == "cdf-replan.png"


def test_simulate_accepts_an_apps_file_and_prints_tables():
    r = run("simulate", "examples/bert-8apps.yaml", "--duration", "60")
    assert r.returncode == 0, r.stderr
    assert "Simulation of the dp plan" in r.stdout
    assert "p99" in r.stdout


def test_simulate_bad_trace_spec_is_one_clear_error(tmp_path):
    r = run("simulate", "examples/vgg19-table1.yaml", "--trace", "nosuch=minute:app1")
    assert r.returncode == 2
    assert "nosuch" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_simulate_missing_trace_file_names_it(tmp_path):
    r = run("simulate", "examples/vgg19-table1.yaml", "--trace", f"rps:{tmp_path}/none.txt")
    assert r.returncode == 2
    assert "none.txt" in r.stderr
    assert "Traceback" not in r.stderr


def test_demo_json_runs_end_to_end_including_live_minilm_serving(tmp_path, batchwise_cache):
    env = {**os.environ, "BATCHWISE_CACHE": str(batchwise_cache)}
    r = run("demo", "--out", str(tmp_path), "--duration", "120", "--live-duration", "6",
            "--json", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    live = out["live"]
    assert live["requests"] > 50 and live["errors"] == 0
    assert live["slo_attainment"] >= 0.95 and live["cost_per_request_measured"] > 0
    assert set(live["apps"]) == {"chat", "search", "tagging", "digest"}
    assert (tmp_path / "live-timeline.png").stat().st_size > 5_000
    algos = [row["algorithm"] for row in out["compare"]]
    assert algos == ["dp", "harmony", "batch", "mbs", "per-app", "cpu-only", "gpu-only", "exact"]
    norm = {row["algorithm"]: row["normalized_cost"] for row in out["compare"]}
    assert norm["batch"] == 1.0
    assert norm["dp"] <= norm["harmony"] <= norm["mbs"] < 1.0
    assert abs(norm["dp"] - norm["exact"]) < 1e-9
    assert set(out["simulations"]) == {"dp", "harmony", "mbs", "batch"}
    assert out["simulations"]["dp"]["replan"] is not None
    for p in out["plots"]:
        assert Path(p).stat().st_size > 5_000
    assert json.loads((tmp_path / "report.json").read_text())["model"] == "VGG19"


def test_finite_mode_runs_fractional_cpu_instances_under_a_cfs_quota():
    """The table-1 plan's 1.55-vCPU group runs 2 threads: its long batches wait for the
    quota (mean_throttle_s > 0) unless --cpu-period-ms 0 charges the profile's times."""
    args = ("simulate", "examples/vgg19-table1.yaml", "--instances", "4", "--duration", "60",
            "--json")  # fmt: skip
    quota, plain = run(*args), run(*args, "--cpu-period-ms", "0")
    assert quota.returncode == 0 and plain.returncode == 0, quota.stderr + plain.stderr
    groups = {g["function"]: g for g in json.loads(quota.stdout)["static"]["groups"]}
    plain_groups = {g["function"]: g for g in json.loads(plain.stdout)["static"]["groups"]}
    cpu = next(f for f in groups if f.startswith("CPU"))
    assert groups[cpu]["mean_throttle_s"] > 0.01
    assert plain_groups[cpu]["mean_throttle_s"] == 0
    gpu = next(f for f in groups if f.startswith("GPU"))
    assert groups[gpu]["mean_throttle_s"] == 0  # a GPU function has no CPU quota here


def test_autoscale_sizes_the_groups_as_serve_does():
    """--autoscale alone is the finite mode, started and sized by the live controller."""
    out = run("simulate", "examples/vgg19-table1.yaml", "--autoscale", "--cores", "8",
              "--duration", "30", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    groups = json.loads(out.stdout)["static"]["groups"]
    cpu = [g for g in groups if g["function"].startswith("CPU")]
    assert cpu and all(g["instances"] >= 1 and g["peak_vcpu"] is not None for g in cpu)
    assert all("scale_events" in g for g in groups)


def test_a_warm_standby_admits_more_of_a_step_than_cold_starts(tmp_path):
    """--standby (as serve's): a scale-up promotes a warm instance at once, and a request
    admission would refuse first promotes one, instead of 5 s of cold start."""
    step = tmp_path / "step.txt"
    step.write_text("\n".join(["0.25"] * 8 + ["4", "4"]) + "\n")  # mean 1, bursts of 4x
    admitted = {}
    for standby in ("0", "1"):
        out = run("simulate", "examples/bert-8apps.yaml", "--autoscale", "--cores", "8",
                  "--cold-start", "5", "--standby", standby, "--trace", f"rps:{step}",
                  "--duration", "60", "--json")  # fmt: skip
        assert out.returncode == 0, out.stderr
        admitted[standby] = json.loads(out.stdout)["static"]["admitted_fraction"]
    assert admitted["1"] > admitted["0"] + 0.02, admitted


def test_standby_needs_autoscale():
    out = run("simulate", "examples/bert-8apps.yaml", "--instances", "2", "--standby", "1")
    assert out.returncode == 2 and "--standby" in out.stderr and "Traceback" not in out.stderr
