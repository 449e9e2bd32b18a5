"""Runner interface of the built-ins: schema, load once, predict, and the two new models."""

from __future__ import annotations

import time

import numpy as np
import pytest

from batchwise.runtime.base import Runner, TensorSpec
from batchwise.runtime.runners import (
    BUILTINS,
    EmbeddingClassifier,
    ResNetClassifier,
    SleepModel,
)


def test_every_builtin_is_a_runner_with_a_batch_first_schema():
    for name, cls in BUILTINS.items():
        assert issubclass(cls, Runner), name
        for spec in (*cls.inputs, *cls.outputs):
            assert isinstance(spec, TensorSpec) and spec.shape[0] == -1, (name, spec)
    assert ResNetClassifier.inputs[0].to_dict() == {
        "name": "image", "datatype": "FP32", "shape": [-1, 3, -1, -1],
    }  # fmt: skip


def test_constructor_is_cheap_and_load_is_once():
    head = EmbeddingClassifier(classes=4, hidden=8)
    assert not hasattr(head, "weights")  # nothing loaded by the constructor
    assert head.load() is head
    weights = head.weights
    head.load()
    assert head.weights is weights
    out = head([np.ones(384, dtype=np.float32)] * 3)
    assert len(out) == 3 and {"label", "score"} == set(out[0])


def test_resnet_classifies_hwc_and_chw_images_the_same():
    net = ResNetClassifier(classes=10, width=8, blocks=(1, 1)).load()
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3), dtype=np.float32)
    a, b = net.predict([img, np.transpose(img, (2, 0, 1))])
    assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], rel=1e-5)
    assert 0 <= a["label"] < 10
    with pytest.raises(TypeError, match="expects an"):
        net.predict([np.zeros((4, 4))])
    with pytest.raises(ValueError):
        ResNetClassifier(blocks=())


def test_sleep_model_takes_its_profile_latency_and_echoes():
    model = SleepModel(base_s=0.02, per_item_s=0.01).load()
    start = time.perf_counter()
    assert model.predict(["a", "b", "c"]) == ["a", "b", "c"]
    took = time.perf_counter() - start
    assert model.latency_s(3) == pytest.approx(0.05)
    assert 0.05 <= took < 0.5
    with pytest.raises(ValueError):
        SleepModel(base_s=-1)


def test_a_runner_that_returns_the_wrong_length_is_an_error():
    class Short(Runner):
        def _load(self) -> None:
            pass

        def predict(self, batch):
            return batch[:-1]

    with pytest.raises(RuntimeError, match="returned 1 outputs for 2 records"):
        Short()(["x", "y"])
