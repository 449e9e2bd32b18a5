"""Model stages of a batch job: a built-in runner, an ONNX file, or a user ``module:Class``.

The runners themselves live in :mod:`batchwise.runtime.runners` (shared with serving);
this module only turns a job's ``pipeline.models`` entry into one, with errors that
name the stage.
"""

from __future__ import annotations

from pathlib import Path

from batchwise.batch.errors import JobStartError
from batchwise.config.job import ModelStage
from batchwise.errors import ConfigError
from batchwise.runtime.base import Runner
from batchwise.runtime.registry import construct
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
    """Build and load a stage's model (built-in name, ``.onnx`` path, or ``module:Class``)."""
    try:
        model = _construct(stage, base)
    except TypeError as exc:  # wrong options for the constructor
        raise ConfigError(f"pipeline.models[{stage.name}].options: {exc}") from None
    except ConfigError:
        raise
    except Exception as exc:  # the model's own constructor failed: the job cannot start
        raise _start_error(stage, exc) from None
    if isinstance(model, Runner):
        try:
            model.load()
        except ConfigError:
            raise
        except Exception as exc:  # weights or runtime failed to load
            raise _start_error(stage, exc) from None
    return model


def _start_error(stage: ModelStage, exc: Exception) -> JobStartError:
    return JobStartError(
        f"pipeline.models[{stage.name}]: model {stage.model!r} failed to start: "
        f"{type(exc).__name__}: {exc}"
    )


def _construct(stage: ModelStage, base: str | Path) -> Model:
    return construct(stage.model, stage.options, base, f"pipeline.models[{stage.name}].model")
