"""Open Inference Protocol tensors: JSON and binary forms, decoded and encoded."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

from batchwise.runtime.base import TensorSpec
from batchwise.serving.gateway import BodyTooLarge, decode_content
from batchwise.serving.oip import InferRequest, ProtocolError, decode_infer, encode_infer

TEXT = (TensorSpec("text", "BYTES", (-1,)),)
EMB = (TensorSpec("embedding", "FP32", (-1, 3)),)


def _body(*inputs, **extra) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def test_json_bytes_and_nested_fp32_rows():
    req = decode_infer(_body({"name": "text", "shape": [2], "datatype": "BYTES",
                              "data": ["a", "b"]}), None, TEXT)  # fmt: skip
    assert req.records == ["a", "b"]
    req = decode_infer(_body({"name": "embedding", "shape": [2, 3], "datatype": "FP32",
                              "data": [[1, 2, 3], [4, 5, 6]]}), None, EMB)  # fmt: skip
    assert [r.tolist() for r in req.records] == [[1, 2, 3], [4, 5, 6]]
    assert req.records[0].dtype == np.float32


def test_binary_bytes_and_fp32_tensors():
    blob = b"".join(struct.pack("<I", len(t)) + t for t in (b"hi", "ü".encode()))
    head = _body({"name": "text", "shape": [2], "datatype": "BYTES",
                  "parameters": {"binary_data_size": len(blob)}})  # fmt: skip
    req = decode_infer(head + blob, str(len(head)), TEXT)
    assert req.records == ["hi", "ü"]
    arr = np.arange(6, dtype="<f4")
    head = _body({"name": "embedding", "shape": [2, 3], "datatype": "FP32",
                  "parameters": {"binary_data_size": 24}})  # fmt: skip
    req = decode_infer(head + arr.tobytes(), str(len(head)), EMB)
    assert req.records[1].tolist() == [3, 4, 5]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": "embedding", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, "x"]},
         "inputs[0].data"),
        ({"name": "embedding", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, True]},
         "inputs[0].data"),
        ({"name": "embedding", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
         "inputs[0].shape[1]"),
        ({"name": "embedding", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 1e39]},
         "inputs[0].data"),
    ],
)  # fmt: skip
def test_numeric_problems_name_the_field(entry, field):
    with pytest.raises(ProtocolError, match=r"^" + field.replace("[", r"\[").replace("]", r"\]")):
        decode_infer(_body(entry), None, EMB)


def test_binary_size_must_match_the_shape():
    head = _body({"name": "embedding", "shape": [1, 3], "datatype": "FP32",
                  "parameters": {"binary_data_size": 8}})  # fmt: skip
    with pytest.raises(ProtocolError, match="binary_data_size"):
        decode_infer(head + b"\0" * 8, str(len(head)), EMB)


def test_several_inputs_make_dict_records():
    specs = (TensorSpec("a", "INT64", (-1,)), TensorSpec("b", "BYTES", (-1,)))
    req = decode_infer(_body({"name": "a", "shape": [2], "datatype": "INT64", "data": [1, 2]},
                             {"name": "b", "shape": [2], "datatype": "BYTES",
                              "data": ["x", "y"]}), None, specs)  # fmt: skip
    assert req.records == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_encode_json_and_binary_outputs():
    req = InferRequest("r", ["a"], frozenset(), False)
    body, head = encode_infer("m", req, [np.ones(3, np.float32)], EMB)
    doc = json.loads(body)
    assert head is None and doc["outputs"][0]["shape"] == [1, 3] and doc["id"] == "r"
    req = InferRequest(None, ["a"], frozenset(), True)
    body, head = encode_infer("m", req, [np.ones(3, np.float32)], EMB)
    meta = json.loads(body[:head])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 12
    assert np.frombuffer(body[head:], "<f4").tolist() == [1, 1, 1]


def test_gzip_bodies_are_decoded_within_the_limit():
    raw = b'{"inputs": []}'
    assert decode_content(gzip.compress(raw), "gzip", 1000) == raw
    with pytest.raises(BodyTooLarge):
        decode_content(gzip.compress(b"0" * 100_000), "gzip", 1000)  # a zip bomb stops early
    with pytest.raises(ProtocolError, match="Content-Encoding"):
        decode_content(raw, "br", 1000)
