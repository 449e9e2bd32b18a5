"""The MiniLM encoder as an optimised ONNX Runtime model (fp32).

Why: ONNX Runtime's fused CPU kernels (attention, GELU, LayerNorm, with graph
optimisations) run the same function faster than eager PyTorch; ``bench/runner_speed.py``
measures by how much. No int8 variant: on this CPU, ONNX Runtime's dynamic int8
quantisation is 1.3-1.7x faster only at a cosine of 0.89-0.97 to the fp32 embeddings;
keeping the sensitive feed-forward projections in fp32 to stay >= 0.99 leaves it no
faster than fp32 (measured 2026-12-01; see the issue notes). The graph
is traced from :meth:`batchwise.runtime.bert.Bert.pooled` — the very code the PyTorch
runner runs — once per weights file, and cached: ``$BATCHWISE_CACHE`` (default
``~/.cache/batchwise``). Writes go to a temporary name and are renamed into place, so
workers starting together never read a half-written model.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from batchwise.errors import ConfigError

OPSET = 17
"""ONNX opset of the export (ONNX Runtime >= 1.13 runs it)."""


def cache_dir() -> Path:
    return Path(os.environ.get("BATCHWISE_CACHE") or Path.home() / ".cache" / "batchwise")


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.safetensors", "config.json"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


def _atomic(target: Path, write: Any) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


WEIGHT_MIN_ELEMENTS = 1024
"""Constant tensors at least this big are weights: stored as graph initializers."""


def _weights_as_initializers(path: str) -> None:
    """Turn the tracer's weight ``Constant`` nodes into initializers, in place.

    The weights live in a dict, not in module parameters, so the tracer embeds them as
    constants; ONNX Runtime's prepacking and the int8 quantiser only see initializers.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    graph = model.graph
    keep = []
    for node in graph.node:
        tensor = node.attribute[0].t if node.op_type == "Constant" and node.attribute else None
        if tensor is not None and node.attribute[0].name == "value":
            array = numpy_helper.to_array(tensor)
            if array.size >= WEIGHT_MIN_ELEMENTS:
                graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
                continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    onnx.save(model, path)


def export_minilm(bert: Any, folder: Path) -> Path:
    """Path of the cached ONNX model of ``bert`` (exported on first use)."""
    try:
        import onnx  # noqa: F401  (torch.onnx and the quantiser need it)
        import torch
    except ImportError as exc:
        raise ConfigError(
            f"runtime 'onnx' needs the onnx package (batchwise[models]): {exc}"
        ) from None
    base = cache_dir() / f"minilm-{_digest(folder)}-opset{OPSET}"
    fp32 = base.with_suffix(".onnx")
    if not fp32.exists():

        class Pooled(torch.nn.Module):
            def forward(self, ids: Any, mask: Any, types: Any) -> Any:
                return bert.pooled(ids, mask, types)

        ids, mask, types = bert.tokenize(["a short sentence", "and a second, longer one"])
        axes = {n: {0: "batch", 1: "tokens"} for n in ("ids", "mask", "types")}
        axes["embedding"] = {0: "batch"}

        def write(path: str) -> None:
            with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    Pooled(), (ids, mask, types), path, input_names=["ids", "mask", "types"],
                    output_names=["embedding"], dynamic_axes=axes, opset_version=OPSET,
                    dynamo=False,
                )  # fmt: skip
            _weights_as_initializers(path)

        _atomic(fp32, write)
    return fp32
