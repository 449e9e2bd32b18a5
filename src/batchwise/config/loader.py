"""Load YAML/JSON files into pydantic models with errors that name file, field and line.

Why: users edit these files by hand; a pydantic traceback tells them nothing.
We compose the YAML node tree once to learn the line of every field path, then
turn each validation error into ``file:line: field: message``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from batchwise.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
PathKey = tuple[str | int, ...]


def _walk(node: yaml.Node, path: PathKey) -> Iterator[tuple[PathKey, int]]:
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _walk(value, (*path, str(key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _walk(item, (*path, i))


def _line_map(text: str) -> dict[PathKey, int]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    return dict(_walk(root, ())) if root is not None else {}


def read_document(path: str | Path) -> tuple[Any, dict[PathKey, int]]:
    """Parse a YAML or JSON file; return the data and a field-path → line map."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read file ({exc})") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{p}{line}: invalid YAML: {problem}") from None
    # JSON is a subset of YAML, so the same composer gives JSON line numbers too.
    return data, _line_map(text)


def format_validation_error(
    exc: ValidationError, source: str, lines: dict[PathKey, int] | None = None
) -> str:
    """One line per problem: ``source:line: field.path: message``."""
    lines = lines or {}
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(x) for x in loc) or "(top level)"
        line = None
        probe = loc
        while probe and line is None:
            line = lines.get(probe)
            probe = probe[:-1]
        where = f"{source}:{line}" if line else source
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif "input" in err and err["type"] not in ("extra_forbidden",):
            msg = f"{msg} (got {err['input']!r})"
        out.append(f"{where}: {field}: {msg}")
    return "\n".join(out)


def validate(model: type[M], data: Any, source: str, lines: dict[PathKey, int] | None = None) -> M:
    """Validate ``data`` as ``model``; raise :class:`ConfigError` naming the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, lines)) from None


def load_model(model: type[M], path: str | Path) -> M:
    """Read and validate a YAML/JSON file as ``model``."""
    data, lines = read_document(path)
    if data is None:
        raise ConfigError(f"{path}: file is empty")
    return validate(model, data, str(path), lines)
