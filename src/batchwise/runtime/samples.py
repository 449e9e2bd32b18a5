"""Deterministic sample records for a model's inputs: profiling, warm-ups, load generation.

Why shared: the profiler must measure the records the load generator sends (a profile
fitted on one-word inputs underestimates twelve-word sentences), so both take them
from here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from batchwise.runtime.base import TensorSpec

SENTENCE_WORDS = 12
"""Words per sample sentence (the peer harness's sentences are ~12 words too)."""
_TEXT = (
    "the quick model reads every small batch while cheap functions wait for late requests "
    "and warm instances answer fast under tight latency goals so cost stays low across many "
    "apps that share one plan with rates from traces of real serving days in busy regions"
)
_WORDS = _TEXT.split()
NUMPY_TYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64,
               "INT32": np.int32, "UINT8": np.uint8, "BOOL": np.bool_}  # fmt: skip


def sentences(seed: int, n: int) -> list[str]:
    """``n`` deterministic sentences of :data:`SENTENCE_WORDS` words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choices(_WORDS, k=SENTENCE_WORDS)
        out.append(" ".join(words).capitalize() + ".")
    return out


def _one(spec: TensorSpec, text: str) -> Any:
    if spec.datatype == "BYTES" and len(spec.shape) == 1:
        return text
    shape = tuple(d if d > 0 else (32 if len(spec.shape) > 2 else 1) for d in spec.shape[1:])
    return np.zeros(shape, NUMPY_TYPES.get(spec.datatype, np.float32))


def sample_records(inputs: Sequence[TensorSpec], n: int, seed: int = 0) -> list[Any]:
    """``n`` records for a model with ``inputs``: sentences for text, zeros for tensors
    (variable image sides become 32); several inputs make dict records."""
    texts = sentences(seed, n)
    if len(inputs) == 1:
        return [_one(inputs[0], t) for t in texts]
    return [{s.name: _one(s, t) for s in inputs} for t in texts]
