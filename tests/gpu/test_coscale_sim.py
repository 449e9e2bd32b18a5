"""The co-scaling simulation (:mod:`batchwise.sim.gpu_serving`) and ``batchwise gpu
coscale``: what each mode does to requests, GPUs and the co-runner, on short traces,
and the command's JSON, plot and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from batchwise.gpu.latency_grid import LatencyGrid
from batchwise.sim.gpu_serving import CoscaleSetup, Mode, arrivals, simulate
from utils import DILU_DIR, cli_exit

RESNET = LatencyGrid.from_csv(DILU_DIR / "resnet152.csv")
ROBERTA = LatencyGrid.from_csv(DILU_DIR / "roberta_large.csv")
PER_REQUEST = RESNET.throughput(16, 0.3)  # one instance's rate at its request (~400/s)


def setup(**kw) -> CoscaleSetup:
    args = dict(grid=RESNET, batch_size=16, request=0.3, limit=0.6, slo_s=0.08, corunner=ROBERTA,
                corunner_batch=32, corunner_request=0.7, corunner_limit=0.9)  # fmt: skip
    args.update(kw)
    return CoscaleSetup(**args)


def test_arrivals_follow_the_per_second_rates():
    t = arrivals(np.array([0.0, 1000.0, 0.0, 500.0]), seed=1)
    assert np.all(np.diff(t) >= 0)
    per_second = np.bincount(t.astype(int), minlength=4)
    assert per_second[0] == 0 and per_second[2] == 0
    assert 900 < per_second[1] < 1100 and 430 < per_second[3] < 570


def test_light_load_every_mode_meets_the_slo_and_every_request_finishes():
    rates = np.full(60, 0.3 * PER_REQUEST)
    for mode in Mode:
        r = simulate(setup(), mode, rates, seed=0)
        d = r.to_dict()
        assert len(r.latencies_s) == r.requests > 6_000, mode
        assert d["qos_violation_rate"] < 0.001, mode


def test_exclusive_harvests_nothing_and_dilu_harvests_more_than_static_limit_per_gpu():
    rates = np.full(60, 0.3 * PER_REQUEST)
    results = {m: simulate(setup(), m, rates, seed=0).to_dict() for m in Mode}
    assert results[Mode.EXCLUSIVE]["corunner_gpu_equivalents"] == 0.0
    per_gpu = {m: d["corunner_gpu_equivalents"] / d["mean_gpus"] for m, d in results.items()}
    assert per_gpu[Mode.DILU] > per_gpu[Mode.STATIC_LIMIT]
    assert results[Mode.DILU]["net_device_seconds"] < results[Mode.EXCLUSIVE]["net_device_seconds"]


def test_an_idle_gpu_gives_the_corunner_its_limit():
    r = simulate(setup(), Mode.DILU, np.zeros(30), seed=0).to_dict()
    expected = ROBERTA.throughput(32, 0.9) / ROBERTA.throughput(32, 1.0)
    assert r["requests"] == 0
    assert r["corunner_gpu_equivalents"] == pytest.approx(expected, rel=1e-6)


def test_static_modes_hold_their_peak_provisioning_and_never_scale():
    rates = np.concatenate([np.full(20, 100.0), np.full(10, 3 * PER_REQUEST), np.full(20, 100.0)])
    for mode in (Mode.STATIC_REQUEST, Mode.STATIC_LIMIT):
        d = simulate(setup(), mode, rates, seed=0).to_dict()
        assert d["scale_outs"] == d["scale_ins"] == 0
        assert d["device_seconds"] == pytest.approx(d["peak_instances"] * len(rates))
    assert simulate(setup(), Mode.STATIC_REQUEST, rates, 0).peak_instances == 3


def test_sustained_overload_scales_out_after_the_lazy_window_and_back_in():
    low, high = np.full(40, 0.2 * PER_REQUEST), np.full(60, 2.5 * PER_REQUEST)
    rates = np.concatenate([low, high, low, low, low])
    r = simulate(setup(), Mode.HORIZONTAL_ONLY, rates, seed=0)
    assert r.scale_outs >= 1 and r.scale_ins >= 1
    gpus = dict(zip(r.timeline["t"], r.timeline["gpus"], strict=True))
    assert gpus[50.0] == 1  # 20 over-capacity seconds are needed first
    assert max(gpus.values()) == r.peak_instances >= 3
    assert gpus[219.0] < r.peak_instances


def test_a_new_instance_takes_no_traffic_during_its_cold_start():
    full = RESNET.throughput(16, 1.0)
    rates = np.concatenate([np.full(40, 0.5 * full), np.full(100, 1.3 * full)])
    late = arrivals(rates, seed=0) >= 110  # the last 30 s: long after the scale-out
    quick = simulate(setup(cold_start_s=1.0), Mode.EXCLUSIVE, rates, seed=0)
    slow = simulate(setup(cold_start_s=1000.0), Mode.EXCLUSIVE, rates, seed=0)
    assert quick.scale_outs >= 1 and slow.scale_outs >= 1
    assert np.mean(quick.latencies_s[late] > 0.08) < 0.01  # the new instance drained it
    assert np.mean(slow.latencies_s[late] > 0.08) > 0.99  # still cold: one instance drowns


def test_strong_interference_triggers_emergencies_that_protect_inference():
    rates = np.array([0.8 * PER_REQUEST, 0.0] * 30)  # busy seconds, then idle ones to recover
    s = setup(interference=3.0)
    dilu = simulate(s, Mode.DILU, rates, seed=0).to_dict()
    assert dilu["emergencies"] > 0 and dilu["recoveries"] > 0
    static = simulate(s, Mode.STATIC_LIMIT, rates, seed=0).to_dict()
    assert dilu["p99_latency_s"] < static["p99_latency_s"]


def test_the_same_seed_gives_the_same_run():
    rates = np.full(30, 0.5 * PER_REQUEST)
    a = simulate(setup(), Mode.DILU, rates, seed=3).to_dict()
    b = simulate(setup(), Mode.DILU, rates, seed=3).to_dict()
    assert a == b


# -- the command -------------------------------------------------------------------------


def _trace(tmp_path, values) -> str:
    path = tmp_path / "rps.txt"
    path.write_text("".join(f"{v}\n" for v in values))
    return str(path)


BASE = ["--grid", str(DILU_DIR / "resnet152.csv"), "--qos", "0.04",
        "--corunner-grid", str(DILU_DIR / "roberta_large.csv")]  # fmt: skip


def test_json_has_every_mode_and_the_searched_function(tmp_path, capsys):
    trace = str(DILU_DIR / "rps" / "sporadic.txt")
    png = tmp_path / "cs.png"
    argv = ["gpu", "coscale", trace, *BASE, "--duration", "120", "--plot", str(png), "--json"]
    assert cli_exit(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d["modes"]) == {m.value for m in Mode}
    f = d["function"]
    assert (f["sm_percent"], f["batch_size"], f["measurements"]) == (30, 16, 9)
    assert (f["request"], f["limit"], f["slo_s"]) == (0.3, 0.6, 0.08)
    assert d["corunner"]["request"] == pytest.approx(0.7)
    assert d["corunner"]["limit"] == pytest.approx(0.9)
    assert d["seconds"] == 120
    for m in d["modes"].values():
        assert 0 <= m["qos_violation_rate"] <= 1 and m["device_seconds"] > 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_table_output_names_every_mode(tmp_path, capsys):
    trace = _trace(tmp_path, [5.0] * 30)
    assert cli_exit(["gpu", "coscale", trace, *BASE, "--mode", "dilu"]) == 0
    out = capsys.readouterr().out
    assert "dilu" in out and "exclusive" not in out


@pytest.mark.parametrize(
    ("extra", "values", "needle"),
    [
        (["--mode", "best"], [1.0], "--mode"),
        (["--peak-load", "-1"], [1.0], "--peak-load"),
        (["--interference", "nan"], [1.0], "--interference"),
        (["--corunner-batch", "3"], [1.0], "--corunner-batch"),
        (["--limit", "0.1"], [1.0], "--limit"),
        (["--qos", "0.001"], [1.0], "--qos"),
        ([], [0.0, 0.0], "every rate is 0"),
        ([], ["x"], "rps.txt:1"),
        (["--plot", "out.txt"], [1.0], "--plot"),
        (["--peak-load", "100", "--duration", "86400"], [1000.0] * 2000, "--peak-load"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, values, needle):
    trace = _trace(tmp_path, values)
    argv = ["gpu", "coscale", trace, *BASE, *extra]
    if extra[:1] == ["--qos"]:
        argv = ["gpu", "coscale", trace, *BASE[:2], *extra, *BASE[4:]]
    assert cli_exit(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]
