"""``batchwise gpu profile``: JSON and table output, grid files, bad input (exit 2, one
line, never a traceback), and one live run on this machine's CPUs under a real quota."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchwise.errors import ConfigError
from batchwise.gpu.measure import GridMeasurer, load_grid
from utils import DILU_DIR, cli_exit


def shipped(name: str) -> str:
    """A Dilu grid CSV (the authors' measurements, copied into tests/data/dilu)."""
    return str(DILU_DIR / name)


def _json(argv: list[str], capsys) -> dict:
    assert cli_exit([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _error_line(argv: list[str], capsys) -> str:
    """The one stderr line of a refused command (exit 2, no traceback)."""
    assert cli_exit(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _csv(tmp_path: Path, text: str, name: str = "grid.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


SYNTHETIC = "".join(f"{b},{s},{0.001 * b * 100 / s:.6f},{b / (0.001 * b * 100 / s):.6f}\n"
                    for s in range(10, 101, 10) for b in (1, 2, 4, 8, 16, 32))  # fmt: skip
"""A full grid whose latency falls as 1/share: every point meets a loose QoS."""


def test_json_reproduces_resnet152(capsys):
    d = _json(["gpu", "profile", "--grid", shipped("resnet152.csv"), "--qos", "0.04"], capsys)
    assert (d["sm_percent"], d["batch_size"], d["measurements"]) == (30, 16, 9)
    assert (d["mode"], d["source"], d["stop"], d["qos_s"]) == ("inference", "grid", "qos", 0.04)
    assert d["grid_best"]["sm_percent"] == 30 and d["grid_best"]["batch_size"] == 16
    assert d["grid_best"]["te"] == pytest.approx(13.3448, abs=1e-4) == d["pick_te"]
    assert d["te_gap"] == 0.0
    assert len(d["trace"]) == 9
    assert d["trace"][0] == {"batch_size": 1, "sm_percent": 10, "latency_s": 0.028115,
                             "throughput": 35.568798, "te": 3.5569}  # fmt: skip


def test_json_reports_the_gap_to_the_grid_best(capsys):
    d = _json(["gpu", "profile", "--grid", shipped("roberta_large.csv"), "--qos", "0.06"], capsys)
    assert (d["sm_percent"], d["batch_size"], d["measurements"]) == (20, 4, 6)
    assert (d["grid_best"]["sm_percent"], d["grid_best"]["batch_size"]) == (30, 4)
    assert d["te_gap"] == pytest.approx(0.1108, abs=1e-4)


def test_table_output(capsys):
    assert cli_exit(["gpu", "profile", "--grid", shipped("llama2.csv"), "--qos", "0.042"]) == 0
    out = capsys.readouterr().out
    assert "pick: 50 % SM, batch 8" in out and "10 measurements" in out
    assert "grid best: 50 % SM, batch 8" in out


def test_training_json(tmp_path, capsys):
    rows = "".join(f"16,{s},{16 / (100 * min(1, s / 60)):.6f},{100 * min(1, s / 60):.6f}\n"
                   for s in range(10, 101, 10))  # fmt: skip
    grid = _csv(tmp_path, rows)
    d = _json(["gpu", "profile", "--grid", grid, "--training", "--batch", "16"], capsys)
    picked = (d["mode"], d["sm_percent"], d["batch_size"], d["measurements"])
    assert picked == ("training", 60, 16, 5)
    assert d["keep"] == 0.98 and "qos_s" not in d
    assert d["grid_best"]["sm_percent"] == 60 and d["te_gap"] == 0.0


def test_max_batch_and_sm_step_reach_the_search(tmp_path, capsys):
    grid = _csv(tmp_path, SYNTHETIC)
    d = _json(["gpu", "profile", "--grid", grid, "--qos", "1", "--max-batch", "8"], capsys)
    picked = (d["sm_percent"], d["batch_size"], d["measurements"], d["stop"])
    assert picked == (10, 8, 4, "batch-limit")
    d = _json(["gpu", "profile", "--grid", grid, "--qos", "0.005", "--sm-step", "20"], capsys)
    assert d["trace"][0]["sm_percent"] == 20  # 1 ms × 100/20 = 5 ms meets 0.005 s at once


BAD_ROWS = [  # grid text, what the one error line must say
    ("1,10,0.01,100\n2,10,0.02\n", "grid.csv:2: expected 4 columns"),
    ("1,10,0.01,100\n2,10,fast,100\n", "grid.csv:2: latency_s: not a number: 'fast'"),
    ("1,10,0.01,100\n\n2,10,0,100\n", "grid.csv:3: latency_s: must be a finite number > 0"),
    ("1,10,0.01,-5\n", "grid.csv:1: throughput: must be a finite number > 0"),
    ("1,10,nan,100\n", "grid.csv:1: latency_s: must be a finite number > 0"),
    ("1.5,10,0.01,100\n", "grid.csv:1: batch_size: must be a whole number, got 1.5"),
    ("1,120,0.01,100\n", "grid.csv:1: sm_percent: must be at most 100, got 120"),
    (
        "1,10,0.01,100\n2,10,0.02,100\n1,10.0,0.03,90\n",
        "grid.csv:3: duplicate point batch 1 at 10 % SM (first on line 1)",
    ),
    ("\n\n", "grid.csv: no rows"),
]


@pytest.mark.parametrize(("text", "says"), BAD_ROWS)
def test_bad_grid_rows_name_file_and_line(tmp_path, capsys, text, says):
    grid = _csv(tmp_path, text)
    line = _error_line(["gpu", "profile", "--grid", grid, "--qos", "0.04"], capsys)
    assert says in line


def test_bad_grid_under_json_is_one_error_object(tmp_path, capsys):
    grid = _csv(tmp_path, "1,10,0.01,100\n2,10,x,100\n")
    assert cli_exit(["gpu", "profile", "--grid", grid, "--qos", "0.04", "--json"]) == 2
    err = json.loads(capsys.readouterr().out)
    assert (err["file"], err["line"], err["field"]) == (grid, 2, "latency_s")


def test_a_point_the_grid_lacks_is_named(tmp_path, capsys):
    grid = _csv(tmp_path, "1,10,0.01,100\n")  # the search will ask for batch 2 at 10 %
    line = _error_line(["gpu", "profile", "--grid", grid, "--qos", "0.04"], capsys)
    assert "needs the point batch 2 at 10 % SM, which the grid lacks" in line
    with pytest.raises(ConfigError, match="batch 4 at 30 % SM"):
        GridMeasurer(load_grid(grid), grid).measure(4, 30)


def test_no_share_meeting_the_qos_is_exit_2(capsys):
    line = _error_line(["gpu", "profile", "--grid", shipped("llama2.csv"), "--qos", "0.01"],
                       capsys)  # fmt: skip
    assert "--qos: no share up to 100 % meets the QoS of 0.01 s at batch 1" in line
    assert "llama2.csv" in line and "fastest: 0.029568 s at 80 % SM" in line


@pytest.mark.parametrize("qos", ["0", "-0.5", "abc", "nan", "inf", "1e9"])
def test_bad_qos_is_exit_2(tmp_path, capsys, qos):
    grid = _csv(tmp_path, SYNTHETIC)
    line = _error_line(["gpu", "profile", "--grid", grid, "--qos", qos], capsys)
    assert "--qos: must be a number" in line


OPTION_MISTAKES = [  # arguments after "gpu profile", the field the line must name
    (["--qos", "0.04"], "--grid"),  # no source
    (["--grid", "{grid}", "--live-cpu", "sleep", "--qos", "0.04"], "--live-cpu"),
    (["--grid", "{grid}"], "--qos"),  # neither --qos nor --training
    (["--grid", "{grid}", "--training"], "--batch"),
    (["--grid", "{grid}", "--training", "--batch", "8", "--qos", "0.04"], "--qos"),
    (["--grid", "{grid}", "--qos", "0.04", "--batch", "8"], "--batch"),
    (["--grid", "{grid}", "--qos", "0.04", "--sm-step", "7"], "--sm-step"),
    (["--grid", "{grid}", "--qos", "0.04", "--max-batch", "0"], "--max-batch"),
    (["--grid", "{grid}", "--qos", "0.04", "--vcpus", "1"], "--vcpus"),
    (["--grid", "{grid}", "--qos", "0.04", "--repeats", "3"], "--repeats"),
    (["--live-cpu", "sleep", "--qos", "0.04", "--options", "[1]"], "--options"),
    (["--live-cpu", "sleep", "--qos", "0.04", "--options", '{"bogus": 1}'], "--options"),
    (["--live-cpu", "sleep", "--qos", "0.04", "--vcpus", "999"], "--vcpus"),
    (["--live-cpu", "nosuchmodel", "--qos", "0.04"], "nosuchmodel"),
]


@pytest.mark.parametrize(("args", "names"), OPTION_MISTAKES)
def test_option_mistakes_are_one_line_exit_2(tmp_path, capsys, args, names):
    grid = _csv(tmp_path, SYNTHETIC)
    argv = ["gpu", "profile", *(a.replace("{grid}", grid) for a in args)]
    assert names in _error_line(argv, capsys)


def test_missing_grid_file_is_exit_2(tmp_path, capsys):
    missing = str(tmp_path / "nope.csv")
    assert f"{missing}: no such file" in _error_line(
        ["gpu", "profile", "--grid", missing, "--qos", "0.04"], capsys)  # fmt: skip


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="a GPU is here: MPS may run")
def test_live_gpu_without_a_gpu_is_a_clean_exit_2(capsys):
    line = _error_line(["gpu", "profile", "--live-gpu", "mlp", "--qos", "0.05"], capsys)
    assert "--live-gpu: no CUDA device" in line


def test_live_cpu_quota_runs_the_search_end_to_end(capsys, monkeypatch):
    """The sleep model takes 4 ms per item, so under a cgroup (which cannot slow a sleep)
    batches 1..8 meet 60 ms and 16 misses it at 10 % and at 20 %: six instances, each
    under its own quota. A duty cycle rests inside the batch, so there only the search's
    invariants are checked."""
    monkeypatch.delenv("BATCHWISE_CPU_QUOTA", raising=False)  # the real mechanism, not off
    argv = ["gpu", "profile", "--live-cpu", "sleep", "--options", '{"per_item_s": 0.004}',
            "--qos", "0.06", "--repeats", "2", "--json"]  # fmt: skip
    assert cli_exit(argv) == 0
    captured = capsys.readouterr()
    d = json.loads(captured.out)
    assert (d["source"], d["mode"], d["model"]) == ("cpu-quota", "inference", "sleep")
    assert d["cpu_quota"] in ("cgroup-v1", "cgroup-v2", "duty-cycle")
    trace = {(p["batch_size"], p["sm_percent"]): p for p in d["trace"]}
    assert len(trace) == d["measurements"] == len(d["trace"])
    assert trace[(d["batch_size"], d["sm_percent"])]["latency_s"] <= 0.06
    assert all(p["latency_s"] >= 0.004 * p["batch_size"] for p in d["trace"])  # really slept
    assert "grid_best" not in d and "te_gap" not in d
    progress = captured.err.strip().splitlines()
    assert len(progress) == d["measurements"]
    assert progress[0].startswith("measured 1: batch 1 at 10 % SM (")
    if d["cpu_quota"].startswith("cgroup"):
        picked = (d["sm_percent"], d["batch_size"], d["measurements"], d["stop"])
        assert picked == (10, 8, 6, "qos")
        assert list(trace)[-2:] == [(16, 10), (16, 20)]
