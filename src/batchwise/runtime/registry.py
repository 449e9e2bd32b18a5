"""Turning a model reference into a runner: a built-in name, an ``.onnx`` path, ``module:Class``.

Why here: batch jobs (``pipeline.models``) and serving instances (apps files' ``runner``)
name models the same way; one resolver keeps the two from drifting apart.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from batchwise.errors import ConfigError
from batchwise.runtime.runners import BUILTINS, Model, OnnxModel


def load_callable(ref: str) -> Callable[..., Any]:
    """Import ``module.path:name``; a clear error if it is missing."""
    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {ref!r}: {exc}") from None


def resolve(path: str, base: str | Path) -> str:
    """A relative local path is taken from the naming file's folder; URLs are left alone."""
    if "://" in path or Path(path).is_absolute():
        return path
    return str(Path(base) / path)


def construct(ref: str, options: Mapping[str, Any], base: str | Path, where: str) -> Model:
    """Construct (not load) the model ``ref`` names; ``where`` prefixes a bad reference.

    Constructor errors (``TypeError`` for unknown options, ``ValueError`` for bad
    values) propagate: callers word them for their own file.
    """
    opts = dict(options)
    if ref.lower() in BUILTINS:
        return BUILTINS[ref.lower()](**opts)
    if ref.endswith(".onnx"):
        return OnnxModel(resolve(ref, base), **opts)
    if ":" in ref:
        return load_callable(ref)(**opts)
    raise ConfigError(
        f"{where}: {ref!r} is not a built-in ({', '.join(BUILTINS)}), an .onnx file or "
        "'module:Class'"
    )
