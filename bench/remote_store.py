"""S3-compatible object store on loopback, with emulated first-byte latency.

Usage: python bench/remote_store.py --probe [--delay-ms 5] [--json]

Why: batch jobs read their inputs from object storage, where every GET waits a round
trip (tens of ms) before its first byte; a local disk hides exactly the cost that
prefetching and concurrency are meant to hide. This module gives benchmarks and tests a
real S3 endpoint (moto) with that latency added, and never talks to anything but 127.0.0.1.

- `start_moto()` runs moto's server in a child process (its own GIL, so it does not
  compete with the benchmark's threads) on 127.0.0.1, on a port the OS picks.
- `DelayProxy` is a TCP proxy in front of it. This kernel has no netem (`tc qdisc ...
  delay`), so latency is injected in user space: after the client sends request bytes,
  the next chunk the server sends back is held for `delay_ms` before it is forwarded; the
  rest of that response streams unchanged. Each request on a keep-alive connection gets
  its own delay (the flag re-arms whenever the client sends again). It adds time to first
  byte, not a bandwidth cap (pipelined requests are not delayed one by one). By default it
  runs as a child process too (GIL again: a busy benchmark thread would add jitter of up
  to the 5 ms switch interval); `process=False` runs it on a thread of this process.
- `upload_dir()` (over HTTP) or `MotoServer.load_dir()` (straight into moto's memory,
  ~50x faster) fill a bucket; `s3_storage_options()` points fsspec/s3fs at an endpoint.
- moto's werkzeug server closes every connection after one response, so with moto behind
  it clients reconnect per request (a loopback connect, not delayed); the proxy itself
  keeps client connections alive as long as the server does.

Importing this module sets dummy AWS credentials, disables EC2 instance-metadata lookups
and ignores ~/.aws, so nothing can reach (or authenticate to) real AWS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
DUMMY_KEY = "testing"
REGION = "us-east-1"
START_TIMEOUT_S = 30.0


def isolate_aws_env() -> None:
    """Force dummy credentials and loopback-only settings so no client can reach real AWS."""
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
    ):
        os.environ[var] = DUMMY_KEY
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    for var in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        os.environ.pop(var, None)
    for var in ("NO_PROXY", "no_proxy"):  # an HTTP(S)_PROXY must not capture loopback traffic
        have = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join([*have, *(h for h in (LOOPBACK, "localhost") if h not in have)])


isolate_aws_env()


def s3_storage_options(endpoint: str) -> dict[str, Any]:
    """fsspec/s3fs options for `endpoint`: `fsspec.open("s3://bucket/key", **opts)`."""
    return {
        "key": DUMMY_KEY,
        "secret": DUMMY_KEY,
        "client_kwargs": {"endpoint_url": endpoint, "region_name": REGION},
    }


def boto3_client(endpoint: str, max_pool: int = 10) -> Any:
    """A boto3 S3 client for `endpoint` (path-style addressing, dummy credentials)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=DUMMY_KEY,
        aws_secret_access_key=DUMMY_KEY,
        config=Config(
            max_pool_connections=max_pool,
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",  # no CRC32 per PUT: CPU we lack
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


def _check_loopback(endpoint: str) -> tuple[str, int]:
    """Split an http://127.0.0.1:PORT endpoint; refuse anything else."""
    u = urlsplit(endpoint)
    if u.scheme != "http" or u.hostname not in (LOOPBACK, "localhost") or u.port is None:
        raise ValueError(f"endpoint must be http://127.0.0.1:PORT, got {endpoint!r}")
    return LOOPBACK, u.port


# --- child processes -------------------------------------------------------------------


class _Child:
    """A helper process running this file with a --serve-* flag.

    Protocol: it prints `PORT <n>` once listening (or `ERROR <why>`); each `NAME [ARG]` line
    written to its stdin is answered by one JSON line; closing its stdin stops it, so it
    also goes away when we die.
    """

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve()), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # nobody would drain a pipe; failures come via stdout
            text=True,
        )
        self._lock = threading.Lock()
        self.port = self._read_port(args[0])

    def _read_port(self, what: str) -> int:
        box: list[str] = []
        reader = threading.Thread(
            target=lambda: box.append(self.proc.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(START_TIMEOUT_S)
        line = box[0].strip() if box else "(timed out)"
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{what} helper did not start: {line or '(exited)'}")
        return int(line.split()[1])

    def ask(self, name: str, arg: str = "") -> dict[str, Any]:
        """Send one command, return its JSON reply; raise on an error reply or a dead child."""
        with self._lock:
            self.proc.stdin.write(f"{name} {arg}".rstrip() + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"helper exited (rc={self.proc.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"helper command {name!r} failed: {reply['error']}")
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()


def _child_main(
    start: Callable[[], tuple[int, Callable[[], None]]], commands: dict[str, Callable[[str], dict]]
) -> None:
    """Child side of the _Child protocol: start, report the port, serve commands until EOF."""
    try:
        port, stop = start()
    except Exception as e:
        print(f"ERROR {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    print(f"PORT {port}", flush=True)
    for line in sys.stdin:
        name, _, arg = line.strip().partition(" ")
        if not name:
            continue
        try:
            reply = commands[name](arg)
        except Exception as e:  # report it and keep serving
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)
    stop()


def _wait_http(host: str, port: int, timeout_s: float = START_TIMEOUT_S) -> None:
    """Block until an HTTP server at host:port answers any request."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/moto-api/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- moto ------------------------------------------------------------------------------


class MotoServer:
    """moto's S3 server in a child process on 127.0.0.1; stops on `.stop()` or with-exit.

    Note: moto's (werkzeug) server closes the connection after every response, so clients
    reconnect per request (cheap on loopback; connects are not delayed by DelayProxy).
    """

    def __init__(self, port: int | None = None) -> None:
        self._child = _Child(["--serve-moto", str(port or 0)])
        self.port = self._child.port
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        try:
            _wait_http(LOOPBACK, self.port)
        except OSError:
            self.stop()
            raise

    def load_dir(self, bucket: str, local_dir: str | Path, prefix: str = "") -> int:
        """Like `upload_dir`, but written straight into moto's in-memory backend.

        Skips HTTP and request signing, which cost ~5 ms of CPU per object here (client plus
        moto), so 20k small files load in about a second instead of over a minute. Reads then
        go through the normal HTTP path. Relies on moto internals (`s3_backends`).
        """
        arg = {
            "bucket": bucket,
            "dir": str(Path(local_dir).resolve()),
            "prefix": _norm_prefix(prefix),
        }
        return int(self._child.ask("load", json.dumps(arg))["objects"])

    def stop(self) -> None:
        self._child.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_moto(port: int | None = None) -> MotoServer:
    """Start moto on 127.0.0.1 (a free port unless `port` is given); returns once it answers."""
    return MotoServer(port)


def _serve_moto(port: int) -> None:
    """Child: moto's WSGI app on werkzeug's threaded server, as ThreadedMotoServer builds it.

    Built here rather than via ThreadedMotoServer so a busy port fails fast instead of
    hanging in start().
    """
    import logging

    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # per-request log lines cost CPU

    def start() -> tuple[int, Callable[[], None]]:
        server = make_server(
            LOOPBACK,
            port,
            DomainDispatcherApplication(create_backend_app),
            threaded=True,
            request_handler=MotoRequestHandler,
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.port, server.shutdown

    _child_main(start, {"load": _moto_load_dir})


def _moto_load_dir(arg: str) -> dict[str, int]:
    """Child side of MotoServer.load_dir: put files into the default account's S3 backend."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    req = json.loads(arg)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    if req["bucket"] not in backend.buckets:
        backend.create_bucket(req["bucket"], REGION)
    root = Path(req["dir"])
    n = size = 0
    for p in _files_under(root):
        data = p.read_bytes()
        backend.put_object(req["bucket"], req["prefix"] + p.relative_to(root).as_posix(), data)
        n += 1
        size += len(data)
    return {"objects": n, "bytes": size}


# --- delay proxy -----------------------------------------------------------------------


class _ProxyCore:
    """The asyncio proxy itself; runs on whichever loop calls `serve`."""

    def __init__(self, target_host: str, target_port: int, delay_s: float) -> None:
        self.target = (target_host, target_port)
        self.delay_s = delay_s
        self.connections = 0
        self.responses = 0
        self._writers: set[asyncio.StreamWriter] = set()

    def stats(self) -> dict[str, int]:
        return {"connections": self.connections, "responses": self.responses}

    async def serve(self, ready: Callable[[int], None], stop: asyncio.Event) -> None:
        """Accept on 127.0.0.1 (free port, passed to `ready`) until `stop` is set."""
        server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        ready(server.sockets[0].getsockname()[1])
        async with server:
            await stop.wait()
            server.close()
            for w in list(self._writers):
                w.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            sreader, swriter = await asyncio.open_connection(*self.target)
        except OSError:
            cwriter.transport.abort()
            return
        self.connections += 1
        for w in (cwriter, swriter):
            w.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
            self._writers.add(w)
        awaiting = False  # the client sent bytes the server has not started answering yet

        def abort() -> None:
            cwriter.transport.abort()
            swriter.transport.abort()

        async def upstream() -> None:
            nonlocal awaiting
            try:
                while data := await creader.read(1 << 16):
                    awaiting = True  # set before forwarding, so the answer cannot beat it
                    swriter.write(data)
                    await swriter.drain()
                if swriter.can_write_eof():
                    swriter.write_eof()
            except OSError:
                abort()

        async def downstream() -> None:
            nonlocal awaiting
            try:
                while data := await sreader.read(1 << 16):
                    if awaiting:
                        awaiting = False
                        self.responses += 1
                        await asyncio.sleep(self.delay_s)
                    cwriter.write(data)
                    await cwriter.drain()
                if cwriter.can_write_eof():
                    cwriter.write_eof()
            except OSError:
                abort()

        try:
            await asyncio.gather(upstream(), downstream())
        finally:
            for w in (cwriter, swriter):
                w.close()  # not abort(): that would drop bytes still buffered for the peer
                self._writers.discard(w)


class DelayProxy:
    """TCP proxy on 127.0.0.1 that delays the first byte of every response by `delay_ms`.

    `process=True` (default) runs it in a child process, `False` on a daemon thread here.
    """

    def __init__(
        self, target_host: str, target_port: int, delay_ms: float = 5.0, process: bool = True
    ) -> None:
        if target_host not in (LOOPBACK, "localhost"):
            raise ValueError("DelayProxy only forwards to 127.0.0.1")
        self.delay_ms = delay_ms
        self._child: _Child | None = None
        self._core: _ProxyCore | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        if process:
            self._child = _Child(["--serve-proxy", str(target_port), str(delay_ms)])
            self.port = self._child.port
        else:
            self._core = _ProxyCore(LOOPBACK, target_port, delay_ms / 1000)
            self.port = self._start_thread(self._core)
        self.endpoint = f"http://{LOOPBACK}:{self.port}"

    def _start_thread(self, core: _ProxyCore) -> int:
        ready = threading.Event()
        box: list[int] = []

        async def main() -> None:
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            await core.serve(lambda p: (box.append(p), ready.set()), self._stop)

        self._thread = threading.Thread(
            target=asyncio.run, args=(main(),), daemon=True, name="delay-proxy"
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError("DelayProxy thread did not start")
        return box[0]

    def stats(self) -> dict[str, int]:
        """Connections accepted and responses delayed so far."""
        if self._core is not None:
            return self._core.stats()
        return self._child.ask("stats")

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
        elif self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve_proxy(target_port: int, delay_ms: float) -> None:
    """Child: the proxy's event loop on a thread; the main thread serves the commands."""
    core = _ProxyCore(LOOPBACK, target_port, delay_ms / 1000)
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["stop"], box["loop"] = asyncio.Event(), asyncio.get_running_loop()
        await core.serve(lambda p: (box.update(port=p), ready.set()), box["stop"])

    def start() -> tuple[int, Callable[[], None]]:
        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError("proxy loop did not start")

        def stop() -> None:
            box["loop"].call_soon_threadsafe(box["stop"].set)
            thread.join(5)

        return box["port"], stop

    _child_main(start, {"stats": lambda _: core.stats()})


# --- data ------------------------------------------------------------------------------


def ensure_bucket(endpoint: str, bucket: str) -> None:
    """Create `bucket` if it does not exist yet."""
    client = boto3_client(endpoint)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)


def _norm_prefix(prefix: str) -> str:
    """'' stays ''; anything else ends with exactly one '/'."""
    return prefix.rstrip("/") + "/" if prefix.strip("/") else ""


def _files_under(root: Path) -> list[Path]:
    """Regular files below root, sorted (so uploads are reproducible)."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def upload_dir(
    endpoint: str, bucket: str, local_dir: str | Path, prefix: str = "", workers: int = 8
) -> int:
    """Upload every file under local_dir to s3://bucket/prefix<relative path>; returns count.

    Creates the bucket if needed. A thread pool shares one boto3 client (thread-safe,
    pooled connections); on 2 cores that beats s3fs `put` (~7.5 s vs 9.1 s for 2000 files);
    both are bound by CPU (~2 ms client + ~3 ms moto per PUT). For a MotoServer of ours,
    `MotoServer.load_dir` is much faster.
    """
    _check_loopback(endpoint)
    root = Path(local_dir)
    prefix = _norm_prefix(prefix)
    paths = _files_under(root)
    ensure_bucket(endpoint, bucket)
    client = boto3_client(endpoint, max_pool=workers)

    def put(p: Path) -> None:
        client.put_object(
            Bucket=bucket, Key=prefix + p.relative_to(root).as_posix(), Body=p.read_bytes()
        )

    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(put, paths):
            pass
    return len(paths)


def first_byte_latencies(endpoint: str, bucket: str, keys: Iterable[str]) -> list[float]:
    """Seconds from sending each GET to its response headers, one request at a time.

    Plain HTTP on presigned URLs (signed up front), so the number is the store's plus the
    proxy's latency, not the client library's per-request overhead. One HTTPConnection is
    reused; moto closes it after each response, so each time includes a loopback connect.
    """
    host, port = _check_loopback(endpoint)
    client = boto3_client(endpoint)
    targets = []
    for key in keys:
        url = urlsplit(
            client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
            )
        )
        targets.append((key, f"{url.path}?{url.query}"))
    conn = http.client.HTTPConnection(host, port, timeout=30)
    out = []
    try:
        for key, target in targets:
            t0 = time.perf_counter()
            conn.request("GET", target)
            resp = conn.getresponse()
            out.append(time.perf_counter() - t0)
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {key}: HTTP {resp.status}")
    finally:
        conn.close()
    return out


def get_latencies(endpoint: str, bucket: str, keys: Iterable[str]) -> list[float]:
    """Seconds per full boto3 GET (signed request, body read): what a real client sees."""
    client = boto3_client(endpoint)
    out = []
    for key in keys:
        t0 = time.perf_counter()
        client.get_object(Bucket=bucket, Key=key)["Body"].read()
        out.append(time.perf_counter() - t0)
    return out


def probe(delay_ms: float, n: int = 50) -> dict[str, Any]:
    """Median GET latencies direct vs through a DelayProxy, n tiny objects."""
    with start_moto() as moto, DelayProxy(LOOPBACK, moto.port, delay_ms) as proxy:
        ensure_bucket(moto.endpoint, "probe")
        client = boto3_client(moto.endpoint)
        keys = [f"obj-{i:03d}" for i in range(n)]
        for k in keys:
            client.put_object(Bucket="probe", Key=k, Body=f"tiny object {k}".encode())
        ms: dict[str, float] = {}
        for name, ep in (("direct", moto.endpoint), ("proxy", proxy.endpoint)):
            get_latencies(ep, "probe", keys[:3])  # warm up connection pools
            ms[f"{name}_get_ms"] = statistics.median(get_latencies(ep, "probe", keys)) * 1e3
            ms[f"{name}_first_byte_ms"] = (
                statistics.median(first_byte_latencies(ep, "probe", keys)) * 1e3
            )
        stats = proxy.stats()
    return {
        "delay_ms": delay_ms,
        "objects": n,
        **{k: round(v, 3) for k, v in ms.items()},
        "added_get_ms": round(ms["proxy_get_ms"] - ms["direct_get_ms"], 3),
        "added_first_byte_ms": round(ms["proxy_first_byte_ms"] - ms["direct_first_byte_ms"], 3),
        "proxy_connections": stats["connections"],
        "proxy_responses": stats["responses"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe", action="store_true", help="measure direct vs proxied GETs")
    ap.add_argument("--delay-ms", type=float, default=5.0)
    ap.add_argument("--objects", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve-moto", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--serve-proxy", nargs=2, metavar=("PORT", "DELAY_MS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_moto is not None:
        _serve_moto(args.serve_moto)
    elif args.serve_proxy:
        port, delay = args.serve_proxy
        _serve_proxy(int(port), float(delay))
    elif args.probe:
        r = probe(args.delay_ms, args.objects)
        if args.json:
            print(json.dumps(r))
        else:
            print(
                f"delay {r['delay_ms']:g} ms, {r['objects']} objects — median GET (boto3): "
                f"direct {r['direct_get_ms']:.2f} ms, proxy {r['proxy_get_ms']:.2f} ms "
                f"(+{r['added_get_ms']:.2f}); first byte: direct "
                f"{r['direct_first_byte_ms']:.2f} ms, proxy {r['proxy_first_byte_ms']:.2f} ms "
                f"(+{r['added_first_byte_ms']:.2f})"
            )
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
