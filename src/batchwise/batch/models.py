"""Model stages of a batch job: a built-in runner, an ONNX file, or a user ``module:Class``.

The runners themselves live in :mod:`batchwise.runtime.runners` (shared with serving);
this module only turns a job's ``pipeline.models`` entry into one, with errors that
name the stage.
"""

from __future__ import annotations

from pathlib import Path

from batchwise.batch.errors import JobStartError
from batchwise.batch.sources import load_callable, resolve
from batchwise.config.job import ModelStage
from batchwise.errors import ConfigError
from batchwise.runtime.runners import (
    BUILTIN_REQUIRES,
    BUILTINS,
    ONNX_REQUIRES,
    EmbeddingClassifier,
    MiniLMEncoder,
    Model,
    OnnxModel,
)

__all__ = [
    "BUILTINS",
    "BUILTIN_REQUIRES",
    "ONNX_REQUIRES",
    "EmbeddingClassifier",
    "MiniLMEncoder",
    "Model",
    "OnnxModel",
    "build_model",
]


def build_model(stage: ModelStage, base: str | Path = ".") -> Model:
    """Instantiate a stage's model (built-in name, ``.onnx`` path, or ``module:Class``)."""
    ref, opts = stage.model, dict(stage.options)
    try:
        if ref.lower() in BUILTINS:
            return BUILTINS[ref.lower()](**opts)
        if ref.endswith(".onnx"):
            return OnnxModel(resolve(ref, base), **opts)
        if ":" in ref:
            return load_callable(ref)(**opts)
    except TypeError as exc:  # wrong options for the constructor
        raise ConfigError(f"pipeline.models[{stage.name}].options: {exc}") from None
    except ConfigError:
        raise
    except Exception as exc:  # the model's own constructor failed: the job cannot start
        raise JobStartError(
            f"pipeline.models[{stage.name}]: model {ref!r} failed to start: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    raise ConfigError(
        f"pipeline.models[{stage.name}].model: {ref!r} is not a built-in "
        f"({', '.join(BUILTINS)}), an .onnx file or 'module:Class'"
    )
