"""Before a job starts: is everything its workers will import or open there?

The master checks every ``module:name`` of the job (``input.reader``,
``pipeline.preprocess``/``postprocess``, ``module:Class`` models: importable from the
job file's folder, the attribute exists, it is callable) and every model (a built-in
with its packages installed, an ``.onnx`` file that exists, options the constructor
accepts). A mistake is one :class:`~batchwise.errors.ConfigError` naming the job file,
field and line, found in milliseconds instead of by every worker after the job has
started. Models are not built here (that is the workers' work, and a constructor that
raises still stops the job, from the worker).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchwise.batch.models import BUILTIN_REQUIRES, BUILTINS, ONNX_REQUIRES, OnnxModel
from batchwise.batch.sources import resolve
from batchwise.config.job import JobSpec, ModelStage
from batchwise.config.loader import read_document
from batchwise.errors import ConfigError

PathKey = tuple[str | int, ...]


class _Problem(Exception):
    def __init__(self, key: PathKey, field: str, message: str) -> None:
        self.key, self.field, self.message = key, field, message


@contextmanager
def importable_from(folder: Path) -> Iterator[None]:
    """User modules may sit beside the job file (workers get it on PYTHONPATH)."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def _function(ref: str, key: PathKey, field: str) -> Callable[..., Any]:
    module, _, name = ref.partition(":")
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or the module's own code raising on import
        raise _Problem(key, field, f"cannot import {ref!r}: {type(exc).__name__}: {exc}") from None
    obj = getattr(mod, name, None)
    if obj is None:
        raise _Problem(key, field, f"cannot import {ref!r}: {module} has no attribute {name!r}")
    if not callable(obj):
        raise _Problem(key, field, f"{ref!r} is not callable (it is a {type(obj).__name__})")
    return obj


def _installed(packages: tuple[str, ...], what: str, key: PathKey, field: str) -> None:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise _Problem(key, field, f"{what} needs {', '.join(missing)} (pip install "
                                   f"'batchwise[models]')")  # fmt: skip


def _model(stage: ModelStage, i: int, base: Path) -> None:
    key: PathKey = ("pipeline", "models", i, "model")
    field = f"pipeline.models[{stage.name}].model"
    ref, args = stage.model, ()
    if ref.lower() in BUILTINS:
        _installed(BUILTIN_REQUIRES[ref.lower()], f"model {ref!r}", key, field)
        cls: Callable[..., Any] = BUILTINS[ref.lower()]
    elif ref.endswith(".onnx"):
        path = resolve(ref, base)
        if "://" not in path and not Path(path).is_file():
            raise _Problem(key, field, f"ONNX file not found: {path}")
        _installed(ONNX_REQUIRES, "an ONNX model", key, field)
        cls, args = OnnxModel, (path,)
    elif ":" in ref:
        cls = _function(ref, key, field)
    else:
        raise _Problem(key, field, f"{ref!r} is not a built-in ({', '.join(BUILTINS)}), "
                                   "an .onnx file or 'module:Class'")  # fmt: skip
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # no signature to check (a C type): the worker will tell
        return
    opts = ("pipeline", "models", i, "options")
    try:
        signature.bind(*args, **stage.options)
    except TypeError as exc:
        raise _Problem(opts, f"pipeline.models[{stage.name}].options", f"{ref}: {exc}") from None
    if ref.lower() in BUILTINS:  # runner constructors only check options: cheap, so run them
        try:
            cls(**stage.options)
        except (TypeError, ValueError) as exc:
            raise _Problem(
                opts, f"pipeline.models[{stage.name}].options", f"{ref}: {exc}"
            ) from None


def check_runnable(job: JobSpec, job_path: Path) -> None:
    """Raise one ConfigError (file, line, field) for the first thing a worker would miss."""
    base = job_path.resolve().parent
    try:
        with importable_from(base):
            functions = [(job.input.reader, ("input", "reader")),
                         (job.pipeline.preprocess, ("pipeline", "preprocess")),
                         (job.pipeline.postprocess, ("pipeline", "postprocess"))]  # fmt: skip
            for ref, key in functions:
                if ref is not None:
                    _function(ref, key, ".".join(map(str, key)))
            for i, stage in enumerate(job.pipeline.models):
                _model(stage, i, base)
    except _Problem as p:
        _, lines = read_document(job_path)
        line = lines.get(p.key) or lines.get(p.key[:-1])
        raise ConfigError(p.message, file=str(job_path), line=line, field=p.field) from None
