"""The ``batchwise`` command, run as users run it (a subprocess of the console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from batchwise.config.plan import Plan
from batchwise.planner import Algorithm
from utils import EXAMPLES_DIR, REPO_ROOT, write

BATCHWISE = Path(sys.executable).parent / "batchwise"
TABLE1 = EXAMPLES_DIR / "vgg19-table1.yaml"

PLAN_KEYS = {"algorithm", "cost_per_request", "planning_time_s", "groups", "currency"}
GROUP_KEYS = {"apps", "function", "batch_size", "timeouts", "cost_per_request", "latency_max"}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert BATCHWISE.exists(), f"console script missing: {BATCHWISE}"
    return subprocess.run(
        [str(BATCHWISE), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_plan_json_has_the_documented_keys():
    out = run("plan", TABLE1, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) >= PLAN_KEYS
    assert doc["algorithm"] == "dp" and doc["currency"] == "CNY"
    assert doc["cost_per_request"] > 0 and doc["planning_time_s"] >= 0
    kinds = set()
    for g in doc["groups"]:
        assert set(g) >= GROUP_KEYS
        fn = g["function"]
        kinds.add(fn["kind"])
        assert set(g["timeouts"]) == set(g["apps"])
        if fn["kind"] == "cpu":
            assert "vcpu" in fn and "gpu_memory_gb" not in fn
        else:
            assert fn["kind"] == "gpu" and isinstance(fn["gpu_memory_gb"], int)
    assert kinds == {"cpu", "gpu"}  # Table I: app1 on CPU, app2 + app3 on GPU
    assert sorted(a for g in doc["groups"] for a in g["apps"]) == ["app1", "app2", "app3"]
    Plan.model_validate(doc)  # the JSON is exactly the Plan model


def test_plan_writes_output_file_and_honours_algorithm(tmp_path):
    out_file = tmp_path / "sub" / "plan.json"
    out = run("plan", TABLE1, "--algorithm", "batch", "-o", out_file)
    assert out.returncode == 0, out.stderr
    assert "batch" in out.stdout  # the human table names the planner
    p = Plan.model_validate_json(out_file.read_text())
    assert p.algorithm == "batch" and len(p.groups) == 3
    assert p.slo_violations_predicted


def test_compare_json_and_plot(tmp_path):
    png = tmp_path / "x.png"
    out = run("compare", TABLE1, "--json", "--plot", png)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [r["algorithm"] for r in doc["rows"]] == [a.value for a in Algorithm]
    assert doc["baseline"] == "batch" and doc["plot"] == str(png)
    by = {r["algorithm"]: r for r in doc["rows"]}
    assert by["batch"]["normalized_cost"] == pytest.approx(1.0)
    assert by["exact"]["normalized_cost"] == pytest.approx(0.601, abs=0.005)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_models_json_lists_the_builtin_models():
    out = run("models", "--json")
    assert out.returncode == 0, out.stderr
    names = {m["model"] for m in json.loads(out.stdout)["models"]}
    assert names == {"VGG19", "Bert", "GPT-2", "VideoMAE"}


def test_bad_apps_file_is_one_line_and_exit_2(tmp_path):
    # A long path, so a console that wraps at 80 columns would split the message.
    bad = write(
        tmp_path / "an-apps-file-with-a-deliberately-long-name-for-wrapping.yaml",
        "model: VGG19\napps:\n  - name: a\n    slo: -0.5\n    rate: 1\n",
    )
    out = run("plan", bad)
    assert out.returncode == 2
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0] == f"error: {bad}:4: apps.0.slo: Input should be greater than 0 (got -0.5)"
    # Under --json the same error is one JSON object on stdout, located.
    out = run("plan", bad, "--json")
    assert out.returncode == 2 and out.stderr == ""
    doc = json.loads(out.stdout)
    assert doc["file"] == str(bad) and doc["line"] == 4 and doc["field"] == "apps.0.slo"
    assert doc["error"] == lines[0].removeprefix("error: ")


def test_missing_file_and_unknown_model_exit_2(tmp_path):
    out = run("plan", tmp_path / "nope[test].yaml")  # brackets are not rich markup
    assert out.returncode == 2 and "file not found" in out.stderr
    assert "nope[test].yaml" in out.stderr
    assert "Traceback" not in out.stderr
    bad = write(tmp_path / "m.yaml", "model: ResNet\napps:\n  - {name: a, slo: 0.5, rate: 1}\n")
    out = run("compare", bad)
    assert out.returncode == 2 and "unknown model 'ResNet'" in out.stderr
    assert "Traceback" not in out.stderr


def test_impossible_slo_exits_2(tmp_path):
    bad = write(tmp_path / "m.yaml", "model: VGG19\napps:\n  - {name: a, slo: 0.001, rate: 1}\n")
    out = run("plan", bad)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "SLO too tight" in out.stderr


@pytest.mark.parametrize(
    "args",
    [("plan", TABLE1, "--algorithm", "greedy"), ("plan",), ("no-such-command",)],
)
def test_usage_errors_exit_2_without_traceback(args):
    out = run(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "Usage:" in out.stderr
