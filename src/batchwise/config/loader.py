"""Load YAML/JSON files into pydantic models with errors that name file, field and line.

Why: users edit these files by hand; a pydantic traceback tells them nothing. We
compose the YAML node tree once, check it (duplicate keys, nesting depth, alias
expansion: see :mod:`batchwise.config.limits`), construct the data from it, and keep
the tree to find the line of any field path when — and only when — an error needs one.
JSON is parsed by :mod:`json` (YAML 1.1 reads ``1e-05`` as a string); its line map is
composed lazily from the same text, since JSON's structure is YAML's.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from batchwise.config.limits import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES
from batchwise.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
PathKey = tuple[str | int, ...]

STDIN = "-"
"""A path of ``-`` reads the document from standard input."""


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that reads ``1e12`` and ``1e-05`` as floats, as YAML 1.2 and JSON do.

    YAML 1.1 (PyYAML) requires a dot in a float, so ``rate: 1e3`` would be the
    string ``"1e3"`` — which strict validation then refuses. Users write exponents.
    """


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class LineMap:
    """Field path → 1-based line, computed from the node tree on first use."""

    def __init__(self, root: yaml.Node | None = None, text: str | None = None) -> None:
        self._root = root
        self._text = text  # composed on demand (JSON)
        self._map: dict[PathKey, int] | None = None

    def _build(self) -> dict[PathKey, int]:
        if self._map is None:
            root = self._root
            if root is None and self._text is not None:
                try:
                    root = yaml.compose(self._text, Loader=_YamlLoader)
                except (yaml.YAMLError, RecursionError):
                    root = None
            self._map = dict(_walk(root)) if root is not None else {}
        return self._map

    def get(self, path: PathKey, default: int | None = None) -> int | None:
        return self._build().get(path, default)

    def __getitem__(self, path: PathKey) -> int:
        return self._build()[path]


def _walk(root: yaml.Node) -> Iterator[tuple[PathKey, int]]:
    """Every field path of the tree with its line (iterative: depth is bounded anyway)."""
    stack: list[tuple[yaml.Node, PathKey]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        yield path, node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            stack.extend((v, (*path, str(k.value))) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, (*path, i)) for i, v in enumerate(node.value))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_duplicates(node: yaml.MappingNode, source: str) -> None:
    seen: dict[Any, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        line = key.start_mark.line + 1
        if key.value in seen:
            raise ConfigError(
                f"duplicate key {key.value!r} (first at line {seen[key.value]})",
                file=source,
                line=line,
                field=str(key.value),
            )
        seen[key.value] = line


def check_tree(root: yaml.Node, source: str) -> None:
    """Refuse duplicate keys, nesting deeper than MAX_DEPTH and alias bombs.

    Sizes are counted as if every alias were expanded (memoised per node, so the
    check itself is linear in the file), because that is what validation will walk.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            line = node.start_mark.line + 1
            if depth[key] > MAX_DEPTH:
                raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", file=source, line=line)
            if size[key] > MAX_VALUES:
                raise ConfigError(
                    f"expands to more than {MAX_VALUES:,} values (YAML aliases?)",
                    file=source,
                    line=line,
                )
            continue
        if key in size:
            continue
        if key in depth:  # entered, not finished: the node contains itself
            raise ConfigError("recursive YAML alias", file=source, line=node.start_mark.line + 1)
        depth[key] = -1
        if isinstance(node, yaml.MappingNode):
            _check_duplicates(node, source)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)
        if len(stack) > MAX_VALUES:
            raise ConfigError(f"holds more than {MAX_VALUES:,} values", file=source)


def _yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return ConfigError(
        f"invalid YAML: {problem}", file=source, line=mark.line + 1 if mark else None
    )


def parse_yaml(text: str, source: str) -> tuple[Any, LineMap]:
    """Compose, check and construct one YAML document."""
    loader = _YamlLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", file=source) from None
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, source) from None
        if root is None:
            return None, LineMap()
        check_tree(root, source)
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, source) from None
    finally:
        loader.dispose()
    return data, LineMap(root)


class _JsonProblem(ValueError):
    """Raised from json's hooks; carries the message (json would lose the position)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _JsonProblem(f"duplicate key {k!r}")
        out[k] = v
    return out


_CONSTANT = re.compile(r'(?<![\w"])(-?Infinity|NaN)(?![\w"])')
"""A bare NaN/Infinity token in JSON text (to find its line; strings rarely hold one)."""


def _reject_constant(name: str) -> float:
    raise _JsonProblem(f"{name} is not a finite number")


def _json_depth(data: Any) -> int:
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, d)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_json(text: str, source: str) -> tuple[Any, LineMap]:
    """Parse JSON: duplicate keys, NaN/Infinity and over-deep nesting are errors."""
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        line = exc.lineno if exc.doc is text else None
        raise ConfigError(f"invalid JSON: {exc.msg}", file=source, line=line) from None
    except RecursionError:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", file=source) from None
    except _JsonProblem as exc:
        constant = _CONSTANT.search(text)
        if "duplicate" not in str(exc) and constant is not None:
            line = text.count("\n", 0, constant.start()) + 1
            raise ConfigError(str(exc), file=source, line=line) from None
        if "duplicate" in str(exc):  # the YAML composer knows where it is
            try:
                root = yaml.compose(text, Loader=_YamlLoader)
                if root is not None:
                    check_tree(root, source)
            except (yaml.YAMLError, RecursionError):
                pass
        raise ConfigError(str(exc), file=source) from None
    if _json_depth(data) > MAX_DEPTH:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", file=source)
    return data, LineMap(text=text)


def read_text(path: str | Path) -> tuple[str, str]:
    """The text of a file (or stdin for ``-``) and the name to show in errors."""
    if str(path) == STDIN:
        text = sys.stdin.read(MAX_FILE_BYTES + 1)
        source = "<stdin>"
    else:
        p = Path(path)
        source = str(p)
        try:
            if p.is_dir():
                raise ConfigError("is a directory, expected a file", file=source)
            with p.open("rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
            text = raw.decode("utf-8-sig")
        except FileNotFoundError:
            raise ConfigError("file not found", file=source) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=source
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read file ({exc.strerror or exc})", file=source) from None
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"larger than the limit of {MAX_FILE_BYTES:,} bytes", file=source)
    return text, source


def read_document(path: str | Path) -> tuple[Any, LineMap]:
    """Parse a YAML or JSON file; return the data and a field-path → line map."""
    text, source = read_text(path)
    if source.lower().endswith(".json"):
        return parse_json(text, source)
    return parse_yaml(text, source)


def _problem(err: Any, source: str, lines: LineMap | dict) -> tuple[str, int | None, str | None]:
    loc = tuple(err["loc"])
    field = ".".join(str(x) for x in loc) or None
    line = None
    probe = loc
    while probe and line is None:
        line = lines.get(probe)
        probe = probe[:-1]
    msg = err["msg"]
    if err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif "input" in err and err["type"] not in ("extra_forbidden",):
        shown = repr(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg = f"{msg} (got {shown})"
    return msg, line, field


def validation_error(
    exc: ValidationError, source: str, lines: LineMap | dict | None = None
) -> ConfigError:
    """The first problem located (file, line, field), and how many more there are."""
    errors = exc.errors()
    msg, line, field = _problem(errors[0], source, lines or {})
    if len(errors) > 1:
        rest = [".".join(str(x) for x in e["loc"]) or "(top level)" for e in errors[1:4]]
        more = f"; {len(errors) - 1} more problem(s): {', '.join(rest)}"
        msg += more + (", ..." if len(errors) > 4 else "")
    return ConfigError(msg, file=source, line=line, field=field)


def validate(model: type[M], data: Any, source: str, lines: LineMap | dict | None = None) -> M:
    """Validate ``data`` as ``model``; raise :class:`ConfigError` naming the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, source, lines) from None
    except RecursionError:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", file=source) from None


def load_document(path: str | Path) -> tuple[Any, LineMap, str]:
    """Read a non-empty document: data, line map and the name to show in errors."""
    data, lines = read_document(path)
    source = "<stdin>" if str(path) == STDIN else str(path)
    if data is None:
        raise ConfigError("file is empty", file=source)
    return data, lines, source


def load_model(model: type[M], path: str | Path) -> M:
    """Read and validate a YAML/JSON file as ``model``."""
    data, lines, source = load_document(path)
    return validate(model, data, source, lines)
