"""The gateway over real HTTP with real clients: tritonclient (binary and JSON tensors)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as tc
from live import infer_body, sleep_gateway

APPS = [("fast", 0.3, 10.0), ("slow", 1.0, 20.0)]


@pytest.fixture(scope="module")
def gw():
    with sleep_gateway(APPS) as g:
        yield g


def _client(gw) -> tc.InferenceServerClient:
    return tc.InferenceServerClient(gw.url.removeprefix("http://"))


def _request(gw, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:  # fmt: skip
    req = urllib.request.Request(gw.url + path, data=body, method=method,
                                 headers=headers or {})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def test_health_and_metadata_through_tritonclient(gw):
    c = _client(gw)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("fast")
    meta = c.get_model_metadata("fast")
    assert meta["name"] == "fast"
    assert meta["inputs"] == [{"name": "input", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "BYTES", "shape": [-1]}]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_round_trip_binary_and_json(gw, binary):
    c = _client(gw)
    data = np.array([b"hello", "wörld".encode(), b""], dtype=object)
    inp = tc.InferInput("input", [3], "BYTES")
    inp.set_data_from_numpy(data, binary_data=binary)
    outputs = [tc.InferRequestedOutput("output", binary_data=binary)]
    res = c.infer("slow", [inp], outputs=outputs, request_id="r1")
    got = [v.decode() if isinstance(v, bytes) else v for v in res.as_numpy("output").tolist()]
    assert got == ["hello", "wörld", ""]  # JSON carries BYTES as text, binary as bytes
    assert res.get_response()["id"] == "r1"


def test_default_tritonclient_call_asks_binary_outputs(gw):
    inp = tc.InferInput("input", [1], "BYTES")
    inp.set_data_from_numpy(np.array([b"x"], dtype=object))
    res = _client(gw).infer("fast", [inp])  # no outputs named: binary_data_output
    assert res.as_numpy("output").tolist() == [b"x"]


def test_plain_json_request(gw):
    body = json.dumps({"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES",
                                   "data": ["a", "b"]}]}).encode()  # fmt: skip
    code, _headers, doc = _request(gw, "POST", "/v2/models/fast/infer", body,
                                  {"Content-Type": "application/json"})  # fmt: skip
    assert code == 200, doc
    assert doc["outputs"] == [{"name": "output", "datatype": "BYTES", "shape": [2],
                               "data": ["a", "b"]}]  # fmt: skip
    assert doc["model_name"] == "fast"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        (b'{"inputs": []}', "inputs"),
        (b'{"inputs": [{"name": "nope", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}',
         "inputs[0].name"),
        (b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1.0]}]}',
         "inputs[0].datatype"),
        (b'{"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}',
         "inputs[0].data"),
        (b'{"inputs": [{"name": "input", "shape": [1, 1], "datatype": "BYTES", "data": ["a"]}]}',
         "inputs[0].shape"),
        (b'{"inputs": [{"name": "input", "shape": [0], "datatype": "BYTES", "data": []}]}',
         "inputs[0].shape[0]"),
        (b'{"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [3]}]}',
         "inputs[0].data"),
        (b'{"inputs": [{"name": "input", "shape": "x", "datatype": "BYTES", "data": ["a"]}]}',
         "inputs[0].shape"),
    ],
)  # fmt: skip
def test_malformed_requests_are_400_naming_the_field(gw, body, field):
    code, _, doc = _request(gw, "POST", "/v2/models/fast/infer", body)
    assert code == 400
    assert doc["error"].startswith(field), doc


def test_binary_header_length_outside_body_is_400(gw):
    code, _, doc = _request(gw, "POST", "/v2/models/fast/infer", b"{}",
                            {"Inference-Header-Content-Length": "99"})  # fmt: skip
    assert code == 400 and "Inference-Header-Content-Length" in doc["error"]


def test_unknown_app_is_404_in_protocol_shape(gw):
    for method, path in [("GET", "/v2/models/nope"), ("GET", "/v2/models/nope/ready"),
                         ("POST", "/v2/models/nope/infer"), ("GET", "/no/such/route")]:  # fmt: skip
        code, _, doc = _request(gw, method, path, b"{}" if method == "POST" else None)
        assert code == 404 and isinstance(doc.get("error"), str), (path, doc)


def test_plan_metrics_and_stats_endpoints(gw):
    code, _, doc = _request(gw, "GET", "/v1/plan")
    assert code == 200 and doc["epoch"] == 1 and doc["batch_order"] == "arrival"
    assert {a for g in doc["plan"]["groups"] for a in g["apps"]} == {"fast", "slow"}
    assert doc["history"] and doc["history"][0]["action"] == "start"
    # idle: every instance at its plan's size (no surge)
    assert [g["vcpu_per_instance"] for g in doc["groups"]] == [
        g["function"]["vcpu"] for g in doc["plan"]["groups"]
    ]
    with urllib.request.urlopen(gw.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    for name in (
        "batchwise_requests_total",
        "batchwise_request_duration_seconds_bucket",
        "batchwise_batch_size_bucket",
        "batchwise_queue_depth",
        "batchwise_instances",
        "batchwise_cost_total",
        "batchwise_slo_attainment",
        "batchwise_instance_vcpu",
    ):
        assert name in text, name
    code, _, stats = _request(gw, "GET", "/v1/stats")
    assert code == 200 and stats["cpu_s"] > 0 and stats["groups"]


def test_openapi_docs_list_the_protocol_routes(gw):
    code, _, doc = _request(gw, "GET", "/openapi.json")
    assert code == 200
    assert "/v2/models/{name}/infer" in doc["paths"] and "/v1/plan" in doc["paths"]


def test_deadline_order_serves_over_http_and_says_so():
    """--batch-order deadline (and an even overload share): the same protocol, both apps
    answered, the order and the share reported."""
    from concurrent.futures import ThreadPoolExecutor

    from batchwise.serving.server import ServeOptions

    with sleep_gateway(APPS, ServeOptions(batch_order="deadline", overload_share="even")) as g:

        def one(app: str) -> int:
            return _request(g, "POST", f"/v2/models/{app}/infer", infer_body(1),
                            {"Content-Type": "application/json"})[0]  # fmt: skip

        with ThreadPoolExecutor(8) as ex:  # concurrent, so batches hold both apps
            codes = list(ex.map(one, ["slow", "fast"] * 20))
        code, _, doc = _request(g, "GET", "/v1/plan")
    assert codes == [200] * 40
    assert code == 200 and doc["batch_order"] == "deadline" and doc["overload_share"] == "even"
