"""Every user mistake ends in exit 2 and one clear line: the regression corpus.

Cases live in ``tests/corpus/cases.yaml`` (files beside it); each runs the real
CLI entry point in-process (``batchwise.cli.main``) — the same error boundary the
console script uses — and checks the exit status, that stderr is exactly one line
naming the problem, and that no traceback leaks. Cases too big to ship as files
(5000-deep YAML, 100 000-deep JSON) are generated here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchwise.cli import main
from utils import EXAMPLES_DIR

CORPUS = Path(__file__).parent / "corpus"
CASES: list[dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())
TABLE1 = EXAMPLES_DIR / "vgg19-table1.yaml"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``batchwise ARGS`` in-process; return (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def _edit(doc: Any, dotted: str) -> tuple[Any, str | int]:
    *parents, last = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    for p in parents:
        doc = doc[p]
    return doc, last


def _plan_file(case: dict[str, Any], tmp: Path) -> Path:
    plan = json.loads((CORPUS / "plans" / "table1.json").read_text())
    for dotted in case.get("delete", []):
        parent, key = _edit(plan, dotted)
        del parent[key]
    for dotted, value in case.get("set", {}).items():
        parent, key = _edit(plan, dotted)
        parent[key] = value
    path = tmp / "plan.json"
    path.write_text(json.dumps(plan, indent=2))
    return path


def _args(case: dict[str, Any], tmp: Path) -> list[str]:
    subs = {"{tmp}": str(tmp), "{table1}": str(TABLE1)}
    if "file" in case:
        subs["{file}"] = str(CORPUS / case["file"])
    if "{plan}" in case["run"]:
        subs["{plan}"] = str(_plan_file(case, tmp))
    out = []
    for arg in case["run"]:
        for k, v in subs.items():
            arg = arg.replace(k, v)
        out.append(arg)
    return out


def assert_one_line_error(code: int, out: str, err: str, expect: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert expect in lines[0], lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_corpus_case_exits_2_with_one_line(case, tmp_path, capsys):
    code, out, err = cli(capsys, *_args(case, tmp_path))
    assert_one_line_error(code, out, err, case["expect"])


@pytest.mark.parametrize("case", CASES[:3], ids=[c["name"] for c in CASES[:3]])
def test_json_errors_are_one_object_on_stdout(case, tmp_path, capsys):
    code, out, err = cli(capsys, *_args(case, tmp_path), "--json")
    assert code == 2 and err == ""
    doc = json.loads(out)
    assert case["expect"] in doc["error"]
    assert doc["file"] and doc["line"] and doc["field"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"),
        ("deep.json", "[" * 100_000 + "]" * 100_000),
        ("deep-map.yaml", "".join(f"{' ' * i}k{i}:\n" for i in range(200)) + " " * 200 + "x\n"),
    ],
)
def test_deep_nesting_is_an_error_not_a_recursion_error(name, text, tmp_path, capsys):
    path = tmp_path / name
    path.write_text(text)
    code, out, err = cli(capsys, "plan", path)
    assert_one_line_error(code, out, err, str(path))
    assert "nest" in err


def test_markup_in_app_names_prints_as_itself(tmp_path, capsys):
    apps = tmp_path / "apps.yaml"
    apps.write_text("model: VGG19\napps:\n  - {name: '[bold]x[/bold]', slo: 0.5, rate: 5}\n")
    code, out, _ = cli(capsys, "plan", apps)
    assert code == 0
    assert "[bold]x[/bold]" in out


def test_plan_reads_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(TABLE1.read_text()))
    code, out, err = cli(capsys, "plan", "-", "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == "VGG19"


def test_version(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.startswith("batchwise ")


def test_internal_error_is_one_line_naming_the_log(monkeypatch, tmp_path, capsys):
    import batchwise.cli as cli_module

    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("synthetic bug")

    monkeypatch.setattr(cli_module, "load_workload", boom)
    monkeypatch.setattr(cli_module, "ERROR_LOG", tmp_path / "error.log")
    code, _, err = cli(capsys, "plan", TABLE1)
    assert code == 1
    assert err.strip().splitlines() == [err.strip()]
    assert "internal error: RuntimeError: synthetic bug" in err and "error.log" in err
    assert "synthetic bug" in (tmp_path / "error.log").read_text()
    code, _, err = cli(capsys, "--debug", "plan", TABLE1)
    assert code == 1 and "Traceback" in err


def test_simulate_finds_the_plans_profile_file_from_any_folder(tmp_path, monkeypatch, capsys):
    """A plan names its profiles file so that it resolves from wherever simulate runs."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "p.yaml").write_text("models:\n  MyNet:\n    gpu: {per_item_s: 0.002, base_s: 0.003}\n")
    (cfg / "apps.yaml").write_text(
        "model: MyNet\nprofiles: p.yaml\napps:\n  - {name: a, slo: 0.5, rate: 5}\n"
    )
    monkeypatch.chdir(cfg)
    code, _, err = cli(capsys, "plan", "apps.yaml", "-o", "plan.json")
    assert code == 0, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = cli(capsys, "simulate", cfg / "plan.json", "--duration", "30", "--json")
    assert code == 0, err
    assert json.loads(out)["static"]["requests"] > 0


def test_schema_prints_every_kind(capsys):
    for kind in ("apps", "profile", "prices", "plan", "job"):
        code, out, _ = cli(capsys, "schema", kind)
        assert code == 0
        assert json.loads(out)["additionalProperties"] is False
