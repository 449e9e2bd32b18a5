"""The GPU-cluster replay: the shipped workloads under every scheduler with every invariant
held, the authors' instances-100 figures, ours against Dilu, violations raising, and the
``batchwise gpu simulate`` command (JSON shape, plot, exit 2 on bad input)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from batchwise.gpu.placement import (
    Capacity,
    ClusterView,
    DiluPolicy,
    Move,
    Placement,
    PlacementPolicy,
    SchedulerName,
    Share,
    make_policy,
)
from batchwise.gpu.workload import GpuInstance, Kind, Workload, load_workload, parse_workload
from batchwise.sim.gpu_cluster import (
    ClusterSimResult,
    InvariantViolation,
    exclusive_peak,
    simulate,
)
from utils import DILU_DIR, cli_exit

DATA = DILU_DIR / "workloads"

PUBLISHED_100 = {"exclusive": 132, "infless-l": 116, "infless-r": 80, "dilu": 82}
"""Peak active GPUs on instances-100 through the authors' own simulator (the notes)."""
OURS_100 = {"exclusive": 132, "infless-l": 117, "infless-r": 79, "dilu": 82}
"""Ours: the authors' code gives these too once its ties go to the lowest GPU id (it
iterates a ``set`` of GPU objects, so its INFless-r gives 79 or 80 from run to run)."""
BASELINES = {200: (242, 222, 160, 155), 400: (386, 347, 271, 263), 800: (693, 638, 520, 500)}
"""Peak GPUs (exclusive, infless-l, infless-r, dilu) on the larger shipped workloads; the
authors' code (ties to the lowest id) gives 242/223/160/155, 386/348/272/263,
693/637/520/499."""


@cache
def workload(n: int) -> Workload:
    return load_workload(DATA / f"instances-{n}.txt")


@cache
def replay(n: int, name: str) -> ClusterSimResult:
    return simulate(workload(n), make_policy(name), deep_checks=n <= 200)


@pytest.mark.parametrize("n", [100, 200, 400, 800])
def test_shipped_workloads_replay_with_every_invariant_held(n: int) -> None:
    for name in SchedulerName:
        r = replay(n, name.value)
        assert r.invariant_violations == 0
        assert len(r.active_gpus) == len(r.times_s) == len(workload(n).events)
        assert r.peak_gpus == max(r.active_gpus)
        first = r.active_gpus.index(r.peak_gpus)
        assert r.peak_time_s == r.times_s[first]
        assert 0.0 < r.sm_fragmentation < 1.0 and 0.0 < r.memory_fragmentation < 1.0
        assert (r.moves > 0) == (name is SchedulerName.REPACK)
    assert replay(n, "exclusive").peak_gpus == exclusive_peak(workload(n))


def test_instances_100_reproduces_the_published_figures() -> None:
    for name, want in OURS_100.items():
        got = replay(100, name).peak_gpus
        assert got == want
        assert abs(got - PUBLISHED_100[name]) <= 1


@pytest.mark.parametrize("n", sorted(BASELINES))
def test_baselines_on_the_larger_workloads(n: int) -> None:
    names = ("exclusive", "infless-l", "infless-r", "dilu")
    assert tuple(replay(n, name).peak_gpus for name in names) == BASELINES[n]


@pytest.mark.parametrize("n", [400, 800])
def test_ours_beats_dilu(n: int) -> None:
    ours, dilu = replay(n, "repack"), replay(n, "dilu")
    assert ours.peak_gpus < dilu.peak_gpus
    assert ours.sm_fragmentation < dilu.sm_fragmentation
    assert ours.gpu_seconds < dilu.gpu_seconds
    assert ours.peak_gpus <= 0.70 * exclusive_peak(workload(n))


def test_the_llm_split_is_worth_gpus_to_dilu(monkeypatch: pytest.MonkeyPatch) -> None:
    import batchwise.gpu.placement as placement

    with_split = {n: replay(n, "dilu").peak_gpus for n in (400, 800)}
    monkeypatch.setattr(placement, "memory_split", lambda *args: None)
    without = {n: simulate(workload(n), DiluPolicy()).peak_gpus for n in (400, 800)}
    assert without[400] - with_split[400] == 8 and without[800] - with_split[800] == 17


def test_fragmentation_is_taken_at_the_first_event_reaching_the_peak() -> None:
    def event(t: int, action: str, name: str, req: float, lim: float, mem: int) -> str:
        inst = {"service_name": name, "type": "inference", "gpu_num": 1,
                "sm_requests": req, "sm_limits": lim, "memory": [mem]}  # fmt: skip
        return repr({"Time": f"2024-01-01 00:{t // 60:02d}:{t % 60:02d}", "Action": action,
                     "Instance": inst})  # fmt: skip

    lines = [
        event(0, "start", "a", 0.6, 0.8, 30),
        event(10, "start", "b", 0.5, 0.7, 20),
        event(20, "start", "c", 0.2, 0.4, 4),
        event(60, "delete", "b", 0.5, 0.7, 20),
    ]
    r = simulate(parse_workload("\n".join(lines)), DiluPolicy())
    assert r.active_gpus == [1, 2, 2, 1]
    assert (r.peak_gpus, r.peak_time_s, r.peak_line) == (2, 10.0, 2)
    assert r.sm_fragmentation == pytest.approx(((1 - 0.6) + (1 - 0.5)) / 2)
    assert r.memory_fragmentation == pytest.approx(((1 - 30 / 40) + (1 - 20 / 40)) / 2)
    assert r.gpu_seconds == pytest.approx(1 * 10 + 2 * 10 + 2 * 40)


class Broken(PlacementPolicy):
    """Dilu with one deliberate bug, to show the mechanism refuses it."""

    name = "broken"

    def __init__(self, bug: str) -> None:
        self.bug = bug

    def place(self, view: ClusterView, inst: GpuInstance) -> Placement | None:
        p = DiluPolicy().place(view, inst)
        assert p is not None
        s = p.shares[0]
        if self.bug == "overfill":
            return Placement(inst.name, (Share(0, s.sm_request, s.sm_limit, s.memory_gb),))
        if self.bug == "span" and inst.kind is Kind.TRAINING:
            gpus = [0, view.capacity.gpus_per_node]
            return Placement(inst.name, tuple(Share(g, s.sm_request, s.sm_limit, s.memory_gb)
                                              for g in gpus))  # fmt: skip
        if self.bug == "memory":
            return Placement(inst.name, (Share(s.gpu, s.sm_request, s.sm_limit, 1.0),))
        if self.bug == "under-reserve":
            half = Share(s.gpu, s.sm_request / 2, s.sm_limit, s.memory_gb)
            return Placement(inst.name, (half, *p.shares[1:]))
        if self.bug == "none":
            return None
        return p

    def on_delete(self, view: ClusterView, deleted: GpuInstance) -> tuple[Move, ...]:
        if self.bug == "move-training":
            for name, inst in view.instances.items():
                if inst.kind is Kind.TRAINING:
                    return (Move(name, view.placements[name]),)
        return ()


@pytest.mark.parametrize("bug", ["overfill", "span", "memory", "under-reserve", "none",
                                 "move-training"])  # fmt: skip
def test_a_violation_is_an_error_not_a_statistic(bug: str) -> None:
    with pytest.raises(InvariantViolation):
        simulate(workload(100), Broken(bug))


def test_capacity_options_change_the_cluster() -> None:
    small = simulate(workload(100), make_policy("dilu"), Capacity(limit=1.0))
    assert small.peak_gpus > replay(100, "dilu").peak_gpus  # no limit overcommit: more GPUs


# --- the command ---------------------------------------------------------------------


def test_cli_json_has_every_scheduler(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    png = tmp_path / "active.png"
    assert cli_exit(["gpu", "simulate", str(DATA / "instances-100.txt"), "--json",
                  "--plot", str(png)]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert set(out["schedulers"]) == {s.value for s in SchedulerName}
    assert out["exclusive_peak"] == 132 and out["instances"] == 100
    dilu = out["schedulers"]["dilu"]
    for key in ("peak_gpus", "ratio_to_exclusive", "sm_fragmentation", "memory_fragmentation",
                "moves", "invariant_violations"):  # fmt: skip
        assert key in dilu
    assert dilu["peak_gpus"] == 82 and dilu["invariant_violations"] == 0
    assert 0 < dilu["sm_fragmentation"] < 1 and 0 < dilu["memory_fragmentation"] < 1
    assert out["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_one_scheduler_and_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["gpu", "simulate", str(DATA / "instances-100.txt"), "--scheduler", "repack"]
    assert cli_exit([*args, "--move-budget", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["schedulers"]) == ["repack"] and out["schedulers"]["repack"]["moves"] == 0
    assert cli_exit(args) == 0
    text = capsys.readouterr().out
    rows = [line.split()[0] for line in text.splitlines()[3:] if line.strip()]
    assert "repack" in rows and "peak GPUs" in text and "dilu" not in rows


def test_cli_bad_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = str(DATA / "instances-100.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text((DATA / "instances-100.txt").read_text().splitlines()[0] + "\n{'Time': \n")
    cases = [
        (["gpu", "simulate", str(bad)], "bad.txt:2"),
        (["gpu", "simulate", str(tmp_path / "none.txt")], "cannot read"),
        (["gpu", "simulate", good, "--scheduler", "best"], "--scheduler"),
        (["gpu", "simulate", good, "--plot", str(tmp_path / "a.jpg")], "--plot"),
        (["gpu", "simulate", good, "--gpus-per-node", "0"], "--gpus-per-node"),
        (["gpu", "simulate", good, "--limit-capacity", "0.5"], "--limit-capacity"),
        (["gpu", "simulate", good, "--gpu-memory-gb", "nan"], "--gpu-memory-gb"),
        (["gpu", "simulate", good, "--move-budget", "-1"], "--move-budget"),
        (["gpu", "simulate", good, "--gpu-memory-gb", "30"], "Instance.memory"),
    ]
    for argv, words in cases:
        assert cli_exit(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert cli_exit(["gpu", "simulate", str(bad), "--json"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["line"] == 2 and error["file"] == str(bad)
