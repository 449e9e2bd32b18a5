"""bench/remote_store.py and bench/gen_data.py: the loopback S3 store and the benchmark corpus.

The I/O benchmarks trust these helpers: that moto serves what was uploaded, that DelayProxy
really adds its first-byte latency (per request, also on keep-alive connections) without
corrupting bytes, and that the generated corpus is byte-for-byte reproducible.
"""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")
pytest.importorskip("s3fs")
pq = pytest.importorskip("pyarrow.parquet")

import fsspec  # noqa: E402  (after the skips: s3fs registers the s3:// protocol)

BENCH = Path(__file__).resolve().parents[2] / "bench"
DELAY_MS = 20.0


def _load(name: str) -> ModuleType:
    """Import a bench/ script by path (bench/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


rs = _load("remote_store")
gen_data = _load("gen_data")


@pytest.fixture(scope="module")
def moto() -> Iterator:
    with rs.start_moto() as server:
        yield server


@pytest.fixture(scope="module")
def bucket(moto, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, bytes]]:
    """A bucket filled over HTTP with a few small objects and one 1 MiB one."""
    src = tmp_path_factory.mktemp("upload")
    objects = {f"small/obj-{i:02d}.txt": f"object number {i}".encode() for i in range(20)}
    objects["big/blob.bin"] = os.urandom(1 << 20)  # > the proxy's 64 KiB reads and buffers
    for key, data in objects.items():
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        (src / key).write_bytes(data)
    assert rs.upload_dir(moto.endpoint, "bench-test", src, prefix="in") == len(objects)
    return "bench-test", {f"in/{k}": v for k, v in objects.items()}


def test_s3fs_reads_through_proxy(moto, bucket) -> None:
    name, objects = bucket
    with rs.DelayProxy("127.0.0.1", moto.port, delay_ms=5) as proxy:
        opts = rs.s3_storage_options(proxy.endpoint)
        for key in ("in/small/obj-07.txt", "in/big/blob.bin"):
            with fsspec.open(f"s3://{name}/{key}", "rb", **opts) as f:
                assert f.read() == objects[key]
        fs = fsspec.filesystem("s3", **opts)
        assert sorted(fs.find(f"{name}/in/small")) == sorted(
            f"{name}/{k}" for k in objects if k.startswith("in/small/")
        )
        assert proxy.stats()["responses"] >= 3


def test_proxy_adds_first_byte_latency(moto, bucket) -> None:
    name, objects = bucket
    keys = [k for k in objects if k.startswith("in/small/")]
    with rs.DelayProxy("127.0.0.1", moto.port, delay_ms=DELAY_MS) as proxy:
        direct = statistics.median(rs.first_byte_latencies(moto.endpoint, name, keys))
        proxied = statistics.median(rs.first_byte_latencies(proxy.endpoint, name, keys))
    assert proxied >= DELAY_MS / 1000
    assert direct < proxied


def test_proxy_delays_every_request_on_a_keepalive_connection() -> None:
    """moto closes connections after each response, so use a keep-alive HTTP/1.1 server."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for process in (False, True):
            with rs.DelayProxy(
                "127.0.0.1", server.server_address[1], DELAY_MS, process=process
            ) as proxy:
                conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
                for i in range(4):
                    watch = time.perf_counter()
                    conn.request("GET", f"/r{i}")
                    resp = conn.getresponse()
                    elapsed = time.perf_counter() - watch
                    assert resp.read() == f"/r{i}".encode()
                    assert elapsed >= DELAY_MS / 1000
                conn.close()
                assert proxy.stats() == {"connections": 1, "responses": 4}
    finally:
        server.shutdown()
        server.server_close()


def test_load_dir_fills_moto_directly(moto, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_bytes(b"direct")
    assert moto.load_dir("bench-direct", tmp_path, prefix="p/") == 1
    with fsspec.open(
        "s3://bench-direct/p/a/x.txt", "rb", **rs.s3_storage_options(moto.endpoint)
    ) as f:
        assert f.read() == b"direct"


def test_endpoints_must_be_loopback() -> None:
    with pytest.raises(ValueError):
        rs.upload_dir("http://example.com:80", "b", ".")
    with pytest.raises(ValueError):
        rs.DelayProxy("10.0.0.1", 80)
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_gen_data_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b, small = tmp_path / "a", tmp_path / "b", tmp_path / "small"
    for out in (a, b):
        summary = gen_data.main(["--out", str(out), "--files", "250", "--json"])
        assert summary["files"] == 250 and not summary["skipped"]
    first = _tree(a)
    assert first == _tree(b)
    assert len([k for k in first if k.startswith("files/")]) == 250
    assert "files/002/rec-0000249.txt" in first
    assert gen_data.main(["--out", str(a), "--files", "250", "--json"])["skipped"]
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["skipped"]

    table = pq.read_table(a / "table.parquet")
    assert table.num_rows == 250
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    assert ids == [f"rec-{i:07d}" for i in range(250)]
    for i, text in zip(ids, texts, strict=True):
        assert first[f"files/{int(i[4:]) // 100:03d}/{i}.txt"] == text.encode()
        assert 8 <= len(text.split()) <= 48
    lines = [json.loads(s) for s in (a / "records.jsonl").read_text().splitlines()]
    assert lines == [{"id": i, "text": t} for i, t in zip(ids, texts, strict=True)]

    gen_data.main(["--out", str(small), "--files", "120"])  # a prefix of the same corpus
    assert all(first[k] == v for k, v in _tree(small).items() if k.startswith("files/"))
