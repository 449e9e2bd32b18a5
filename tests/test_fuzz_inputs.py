"""Fuzz every file kind through its loader and through the CLI.

Property: a mutated apps / profile / price-book / plan / job file either loads
(or the command exits 0 with a result), or fails with a :class:`BatchwiseError`
(the command exits 2 with one line) — never another exception, a traceback, a
hang or exit 1. Mutations start from real, valid documents and replace, delete
or add values (NaN, inf, huge and negative numbers, booleans, strings, markup,
unicode, deep nesting), duplicate lines (duplicate keys) and cut the text.
Examples are derandomised so CI is reproducible; the deadline is the time bound.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchwise.batch.preflight import check_runnable
from batchwise.cli import load_plan_context, main
from batchwise.config.apps import load_workload
from batchwise.config.job import load_job
from batchwise.config.prices import BUILTIN_PRICE_BOOKS, load_prices
from batchwise.config.profiles import load_profiles
from batchwise.errors import BatchwiseError
from utils import EXAMPLES_DIR

CORPUS = Path(__file__).parent / "corpus"

APPS: dict[str, Any] = yaml.safe_load((EXAMPLES_DIR / "vgg19-table1.yaml").read_text())
PROFILE: dict[str, Any] = {
    "models": {
        "MyNet": {
            "cpu": {
                "avg": [[1.83, 0.53, 0.18], [4.85, 0.43, 0.36]],
                "max": [[2.80, 0.49, 0.25], [4.92, 0.49, 0.39]],
                "memory_base_mb": 808,
                "memory_per_item_mb": 36.6,
            },
            "gpu": {
                "per_item_s": 0.00168,
                "base_s": 0.00211,
                "memory_steps": [0, 4, 8],
                "max_batch": 8,
            },
        }
    }
}
PRICES: dict[str, Any] = BUILTIN_PRICE_BOOKS["alibaba-fc-2023"].model_dump(mode="json")
PLAN: dict[str, Any] = json.loads((CORPUS / "plans" / "table1.json").read_text())
JOB: dict[str, Any] = {
    "input": {"kind": "jsonl", "path": "in/*.jsonl"},
    "pipeline": {"models": [{"name": "head", "model": "classifier", "batch_size": 8}]},
    "output": {"path": "out", "format": "jsonl"},
    "shards": {"records": 100},
    "workers": {"min": 1, "max": 2},
    "lease_s": 30,
    "max_attempts": 3,
}

WEIRD = st.one_of(
    st.sampled_from(
        [
            float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 1e12, 1e-300,
            -1, 0, 0.0, True, False, None, "", "x", "1e3", "[bold]x[/bold]", "☃\u202e",
            [], {}, [[[]]], {"k": {"k": {}}}, 10**30,
        ]
    ),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)  # fmt: skip
FACTORS = st.sampled_from([0.5, 2, 10, 0.1, 1000, -1, 0, 1e6, 1.0001, 1e-6, 3])
OPS = ("scale", "scale", "scale", "replace", "delete", "add-key", "deepen")
MUTATIONS = st.lists(
    st.tuples(st.integers(0, 10**6), st.sampled_from(OPS), WEIRD, FACTORS),
    min_size=1,
    max_size=3,
)
TEXT_OPS = st.lists(
    st.tuples(st.sampled_from(("duplicate-line", "cut", "insert")), st.integers(0, 10**6)),
    max_size=2,
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _mutate(base: Any, mutations: list[tuple[int, str, Any, float]]) -> Any:
    """Apply each (index, op, value, factor): ``scale`` multiplies a numeric leaf (odd
    but often valid values reach the planner and simulator); the rest break things."""
    doc = copy.deepcopy(base)
    for index, op, shared, factor in mutations:
        value = copy.deepcopy(shared)  # sampled values are shared between examples
        paths = _paths(doc)
        if op == "scale":
            numeric = [p for p in paths if p and _is_number(_get(doc, p))]
            if not numeric:
                continue
            path = numeric[index % len(numeric)]
            parent = _get(doc, path[:-1])
            parent[path[-1]] = parent[path[-1]] * factor
            continue
        path = paths[index % len(paths)]
        if not path:
            doc = value if op == "replace" else doc
            continue
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        key = path[-1]
        if op == "replace":
            parent[key] = value
        elif op == "delete":
            del parent[key]
        elif op == "add-key" and isinstance(parent, dict):
            parent[f"extra_{index % 7}"] = value
        elif op == "deepen":
            inner: Any = parent[key]
            for _ in range(index % 90 + 1):
                inner = [inner]
            parent[key] = inner
    return doc


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _render(doc: Any, as_json: bool, text_ops: list[tuple[str, int]]) -> str:
    text = json.dumps(doc, indent=1) if as_json else yaml.safe_dump(doc, allow_unicode=True)
    for op, n in text_ops:
        lines = text.splitlines(keepends=True) or [""]
        if op == "duplicate-line":
            i = n % len(lines)
            lines.insert(i, lines[i])
            text = "".join(lines)
        elif op == "cut":
            text = text[: n % (len(text) + 1)]
        else:
            i = n % (len(text) + 1)
            chars = "\x00\ufeff:{[&*!|>'\"%@`"
            text = text[:i] + chars[n % len(chars)] + text[i:]
    return text


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


FUZZ = settings(
    max_examples=600,
    deadline=5000,  # ms per example: the "no hang" bound
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _loads_or_user_error(load: Callable[[Path], Any], path: Path) -> None:
    try:
        load(path)
    except BatchwiseError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        assert "Traceback" not in message


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module; each example overwrites the same file names."""
    return tmp_path_factory.mktemp("fuzz")


def _case(
    folder: Path, base: Any, name: str, mutations, as_json: bool, text_ops
) -> tuple[Path, Path]:
    for old in folder.iterdir():
        old.unlink()
    doc = _mutate(base, mutations)
    path = _write(folder, name + (".json" if as_json else ".yaml"), _render(doc, as_json, text_ops))
    return folder, path


def _apps_naming(folder: Path, field: str, path: Path) -> Path:
    return _write(
        folder,
        "apps.yaml",
        f"model: MyNet\n{field}: {path.name}\napps:\n  - {{name: a, slo: 0.8, rate: 5}}\n"
        if field == "profiles"
        else f"model: VGG19\n{field}: {path.name}\napps:\n  - {{name: a, slo: 0.8, rate: 5}}\n",
    )


KINDS: dict[str, tuple[Any, Callable[[Path], Any]]] = {
    "apps": (APPS, load_workload),
    "profile": (PROFILE, load_profiles),
    "prices": (PRICES, load_prices),
    "plan": (PLAN, load_plan_context),
    "job": (JOB, lambda path: check_runnable(load_job(path), path)),  # + the master's pre-flight
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", list(KINDS))
@FUZZ
@given(mutations=MUTATIONS, as_json=st.booleans(), text_ops=TEXT_OPS)
def test_loader_accepts_or_raises_a_user_error(folder, kind, mutations, as_json, text_ops):
    base, load = KINDS[kind]
    _, path = _case(folder, base, kind, mutations, as_json, text_ops)
    _loads_or_user_error(load, path)


def _cli(args: list[str]) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
            code: Any = 0
        except SystemExit as exc:
            code = exc.code
    return (code if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


def _command(kind: str, folder: Path, path: Path) -> list[str]:
    if kind == "apps":
        return ["plan", str(path)]
    if kind in ("profile", "prices"):
        field = "profiles" if kind == "profile" else "prices"
        return ["plan", str(_apps_naming(folder, field, path))]
    return ["simulate", str(path), "--duration", "2"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["apps", "profile", "prices", "plan"])
@settings(FUZZ, max_examples=150)
@given(mutations=MUTATIONS, as_json=st.booleans(), text_ops=TEXT_OPS)
def test_cli_exits_0_or_2_with_one_line(folder, kind, mutations, as_json, text_ops):
    base, _ = KINDS[kind]
    folder, path = _case(folder, base, kind, mutations, as_json, text_ops)
    code, out, err = _cli(_command(kind, folder, path))
    assert code in (0, 2), (code, err[-2000:])
    assert "Traceback" not in err and "Traceback" not in out
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    else:
        assert out.strip(), "exit 0 must come with a result"
