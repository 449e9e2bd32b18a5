"""The Dilu workload parser: the shipped files, and every malformed line as one ConfigError
that names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchwise.errors import ConfigError
from batchwise.gpu.workload import Action, Kind, Limits, load_workload, parse_workload
from utils import DILU_DIR

DATA = DILU_DIR / "workloads"

T0 = "2024-06-19 15:46:09"


def inst(**over: object) -> dict[str, object]:
    base: dict[str, object] = {"service_name": "inference-a", "type": "inference", "gpu_num": 1,
                               "sm_requests": 0.3, "sm_limits": 0.5, "memory": [6]}  # fmt: skip
    base.update(over)
    return base


def line(action: str = "start", time: str = T0, **over: object) -> str:
    return repr({"Time": time, "Action": action, "Instance": inst(**over)})


def error_of(text: str, limits: Limits | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_workload(text, "w.txt", limits)
    return info.value


@pytest.mark.parametrize("n", [100, 200, 400, 800])
def test_shipped_workloads_parse(n: int) -> None:
    w = load_workload(DATA / f"instances-{n}.txt")
    assert w.n_instances == n
    kinds = {e.instance.kind for e in w.events}
    assert kinds == set(Kind)
    times = [e.time_s for e in w.events]
    assert times[0] == 0.0 and times == sorted(times)
    # every delete refers to an instance started earlier and not yet deleted
    live: set[str] = set()
    for e in w.events:
        if e.action is Action.START:
            assert e.instance.name not in live
            live.add(e.instance.name)
        else:
            live.remove(e.instance.name)
    assert w.max_live > 0


def test_fields_of_a_training_line() -> None:
    text = line(service_name="training-x", type="training", gpu_num=2, sm_requests=0.55,
                sm_limits=0.81, memory=[30, 30])  # fmt: skip
    (e,) = parse_workload(text).events
    i = e.instance
    assert (i.name, i.kind, i.gpu_num, i.sm_request, i.sm_limit) == (
        "training-x", Kind.TRAINING, 2, 0.55, 0.81)  # fmt: skip
    assert i.memory_gb == (30.0, 30.0) and i.total_memory_gb == 60.0
    assert i.function == "training-x" and e.line == 1


def test_blank_lines_and_comments_are_skipped_and_lines_count() -> None:
    text = "# a comment\n\n" + line() + "\n" + line("delete", "2024-06-19 15:47:09") + "\n"
    w = parse_workload(text)
    assert [e.line for e in w.events] == [3, 4]
    assert [e.time_s for e in w.events] == [0.0, 60.0]


def test_optional_function_key_groups_replicas() -> None:
    text = line(function="bert") + "\n" + line(service_name="inference-b", function="bert")
    assert {e.instance.function for e in parse_workload(text).events} == {"bert"}


def test_a_delete_may_carry_only_the_name() -> None:
    text = line() + "\n" + repr({"Time": T0, "Action": "delete",
                                 "Instance": {"service_name": "inference-a"}})  # fmt: skip
    assert parse_workload(text).events[1].action is Action.DELETE


BAD_LINES = [
    ("{'Time': ", None, "not a Python dict literal"),
    ("__import__('os').system('true')", None, "not a Python dict literal"),
    ("[1, 2]", None, "expected a dict literal"),
    (repr({"Action": "start", "Instance": inst()}), "Time", "missing"),
    (repr({"Time": "yesterday", "Action": "start", "Instance": inst()}), "Time", "not a"),
    (repr({"Time": T0, "Action": "stop", "Instance": inst()}), "Action", "'start' or 'delete'"),
    (repr({"Time": T0, "Action": "start"}), "Instance", "missing"),
    (repr({"Time": T0, "Action": "start", "Instance": "x"}), "Instance", "must be dict"),
    (line(type="mystery"), "Instance.type", "unknown type"),
    (line(gpu_num="1"), "Instance.gpu_num", "must be int"),
    (line(gpu_num=True), "Instance.gpu_num", "must be int"),
    (line(gpu_num=2, memory=[6, 6]), "Instance.gpu_num", "1..1"),
    (line(type="training", gpu_num=8, memory=[30] * 8), "Instance.gpu_num", "1..4"),
    (line(sm_requests=-0.1), "Instance.sm_requests", "(0, 1]"),
    (line(sm_requests=1.2, sm_limits=1.3), "Instance.sm_requests", "(0, 1]"),
    (line(sm_requests=0.3).replace("0.3", "1e999"), "Instance.sm_requests", "finite"),
    (line(sm_limits=0.2), "Instance.sm_limits", "[sm_requests=0.3"),
    (line(sm_limits=1.6), "Instance.sm_limits", "1.5"),
    (line(memory=[41]), "Instance.memory", "(0, 40]"),
    (line(memory=[0]), "Instance.memory", "(0, 40]"),
    (line(memory=6), "Instance.memory", "must be list"),
    (line(memory=[6, 6]), "Instance.memory", "expected gpu_num=1"),
    (line(service_name=""), "Instance.service_name", "empty"),
]


@pytest.mark.parametrize(("text", "field", "words"), BAD_LINES)
def test_bad_line_names_file_line_and_field(text: str, field: str | None, words: str) -> None:
    err = error_of(line(service_name="ok-first") + "\n" + text)
    assert err.file == "w.txt" and err.line == 2 and err.field == field
    assert words in err.message


def test_over_capacity_follows_the_gpu_model() -> None:
    assert error_of(line(memory=[30]), Limits(gpu_memory_gb=24)).field == "Instance.memory"
    parse_workload(line(sm_limits=1.9), limits=Limits(limit_capacity=2.0))


def test_delete_of_an_unknown_instance() -> None:
    err = error_of(line("delete"))
    assert err.line == 1 and "never started" in err.message


def test_delete_twice_names_the_first_delete() -> None:
    text = "\n".join([line(), line("delete"), line("delete")])
    err = error_of(text)
    assert err.line == 3 and "already deleted at line 2" in err.message


def test_restart_after_delete_is_allowed_but_not_while_running() -> None:
    parse_workload("\n".join([line(), line("delete"), line()]))
    err = error_of("\n".join([line(), line()]))
    assert err.line == 2 and "already running" in err.message


def test_delete_that_disagrees_with_its_start() -> None:
    err = error_of(line() + "\n" + line("delete", memory=[7]))
    assert err.field == "Instance.memory" and "differs" in err.message


def test_time_going_backwards() -> None:
    err = error_of(line() + "\n" + line(service_name="b", time="2024-06-19 15:46:08"))
    assert err.line == 2 and err.field == "Time" and "backwards" in err.message


def test_empty_and_unreadable_files(tmp_path: Path) -> None:
    assert "no events" in error_of("\n# nothing\n").message
    with pytest.raises(ConfigError, match="cannot read"):
        load_workload(tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="cannot read"):
        load_workload(tmp_path)
