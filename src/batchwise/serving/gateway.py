"""The HTTP gateway: Open Inference Protocol (v2) REST, plan and Prometheus endpoints.

Two layers. The hot path — ``POST /v2/models/{app}/infer`` and the bearer-token
check — is a plain ASGI function (:class:`Gateway`) in front of FastAPI: per request it
reads the body itself, so (a) a body over the limit is refused from its
``Content-Length`` before any of it is read (413), (b) Triton's binary tensor extension
works, (c) every problem is a 400 naming the field in the protocol's error shape
``{"error": "..."}``, and (d) it costs a fraction of a framework route (middleware
stacks and dependency solving were most of the gateway's CPU under overload, and
overload is exactly when refusals must be cheap). FastAPI serves everything else and
the OpenAPI docs, where the infer route is declared with the same handler.
Health endpoints need no token (probes); everything else does when one is set.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from batchwise import __version__
from batchwise.serving import oip
from batchwise.serving.pool import InstanceLost, ModelError
from batchwise.serving.server import Rejected, Server, Unavailable

DEFAULT_MAX_BODY = 16 * 1024 * 1024
"""Largest request body (bytes) by default: 16 MiB."""
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, body, extra headers


class BodyTooLarge(Exception):
    pass


def _json_error(status: int, message: str, retry_after: str | None = None) -> Reply:
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    return status, orjson.dumps({"error": message}), headers


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def decode_content(body: bytes, encoding: str, limit: int) -> bytes:
    """The body after ``Content-Encoding`` (gzip, deflate), never more than ``limit`` bytes."""
    encoding = encoding.lower() or "identity"
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise oip.ProtocolError(f"Content-Encoding: {encoding!r} is not supported")
    d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise oip.ProtocolError(f"Content-Encoding: cannot decode {encoding} ({exc})") from None
    if len(out) > limit or d.unconsumed_tail:
        raise BodyTooLarge(f"decoded body is over the limit of {limit} bytes")
    return out


async def read_body(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes:
    """The decoded body, refusing more than ``limit`` bytes before reading past it."""
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(f"body of {int(length)} bytes is over the limit of {limit}")
    chunks, got, more = [], 0, True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        chunk = msg.get("body", b"")
        got += len(chunk)
        if got > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
        more = msg.get("more_body", False)
    body = b"".join(chunks)
    return decode_content(body, headers.get(b"content-encoding", b"").decode("latin-1"), limit)


async def handle_infer(server: Server, name: str, headers: dict[bytes, bytes],
                       receive: Receive, max_body: int) -> Reply:  # fmt: skip
    """One infer request, framework-free: status, body and headers of the answer."""
    t0 = time.monotonic()
    if name not in server.routes:
        return _json_error(404, f"unknown model (app) {name!r}; apps: "
                                f"{', '.join(server.apps[:20])}")  # fmt: skip
    shed = server.overloaded(name)
    if shed is not None:  # refused before the body is read: the cheapest answer there is
        server.observe(name, time.monotonic() - t0, 503, admitted=False)
        return _json_error(503, shed, "1")
    try:
        body = await read_body(headers, receive, max_body)
        inputs, outputs = server.schema()
        header_len = headers.get(b"inference-header-content-length")
        req = oip.decode_infer(body, header_len.decode("latin-1") if header_len else None,
                               inputs)  # fmt: skip
    except BodyTooLarge as exc:
        return _json_error(413, str(exc))
    except oip.ProtocolError as exc:
        server.observe(name, time.monotonic() - t0, 400, admitted=False)
        return _json_error(400, str(exc))
    except Unavailable as exc:
        return _json_error(503, str(exc), "1")
    try:
        results = await server.infer(name, req.records)
    except Rejected as exc:
        server.observe(name, time.monotonic() - t0, 503, admitted=False)
        return _json_error(503, str(exc), str(int(exc.retry_after_s)))
    except (Unavailable, InstanceLost) as exc:
        server.observe(name, time.monotonic() - t0, 503)
        return _json_error(503, str(exc), "1")
    except ModelError as exc:
        server.observe(name, time.monotonic() - t0, 500)
        return _json_error(500, f"model failed on this batch: {exc}")
    try:
        content, head_len = oip.encode_infer(name, req, results, outputs)
    except (ValueError, TypeError, KeyError) as exc:
        server.observe(name, time.monotonic() - t0, 500)
        return _json_error(500, f"model output does not fit its schema: {exc}")
    server.observe(name, time.monotonic() - t0, 200)
    if head_len is None:
        return 200, content, [(b"content-type", b"application/json")]
    return 200, content, [(b"content-type", b"application/octet-stream"),
                          (b"inference-header-content-length", str(head_len).encode())]  # fmt: skip


async def _send_reply(send: Send, reply: Reply) -> None:
    status, body, headers = reply
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Gateway:
    """ASGI front: token check and the infer fast path; everything else goes to FastAPI."""

    def __init__(self, server: Server, api: FastAPI, token: str | None, max_body: int) -> None:
        self.server, self.api, self.max_body = server, api, max_body
        self._expected = f"Bearer {token}".encode() if token is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)  # lifespan
            return
        path: str = scope["path"]
        if self._expected is not None and not path.startswith("/v2/health"):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await _send_reply(send, _json_error(401, "missing or wrong bearer token"))
                return
        if scope["method"] == "POST":
            m = INFER_PATH.match(path)
            if m is not None:
                headers = dict(scope["headers"])
                reply = await handle_infer(self.server, m.group(1), headers, receive,
                                           self.max_body)  # fmt: skip
                await _send_reply(send, reply)
                return
        await self.api(scope, receive, send)


def create_app(server: Server, token: str | None = None, max_body: int = DEFAULT_MAX_BODY,
               manage: bool = True) -> Gateway:  # fmt: skip
    """The ASGI app for ``server``; ``manage``: its lifespan starts and closes the server."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage:
            app.state.start = asyncio.ensure_future(server.start())
        yield
        if manage:
            if not app.state.start.done():
                app.state.start.cancel()
            await server.close()

    app = FastAPI(
        title="batchwise gateway", version=__version__, lifespan=lifespan,
        description="Open Inference Protocol (v2) REST over a multi-SLO plan.",
    )  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/v2/health/live", summary="Server liveness")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", summary="Ready: every group has a warm instance")
    async def ready() -> Response:
        if server.ready() and not server.closing:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False}, status_code=503)

    @app.get("/v2", summary="Server metadata")
    async def metadata() -> dict[str, Any]:
        return {"name": "batchwise", "version": __version__,
                "extensions": ["binary_tensor_data"]}  # fmt: skip

    def _known(name: str) -> None:
        if name not in server.routes:
            raise StarletteHTTPException(404, f"unknown model (app) {name!r}; apps: "
                                         f"{', '.join(server.apps[:20])}")  # fmt: skip

    @app.get("/v2/models/{name}", summary="Model (app) metadata: inputs and outputs")
    @app.get("/v2/models/{name}/versions/{version}", include_in_schema=False)
    async def model_metadata(name: str, version: str = "1") -> Response:
        _known(name)
        try:
            inputs, outputs = server.schema()
        except Unavailable as exc:
            return error(503, str(exc))
        return JSONResponse({"name": name, "versions": ["1"], "platform": "batchwise",
                             "inputs": [t.to_dict() for t in inputs],
                             "outputs": [t.to_dict() for t in outputs]})  # fmt: skip

    @app.get("/v2/models/{name}/ready", summary="Model (app) readiness")
    @app.get("/v2/models/{name}/versions/{version}/ready", include_in_schema=False)
    async def model_ready(name: str, version: str = "1") -> Response:
        _known(name)
        ok = server.ready() and not server.closing
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @app.post("/v2/models/{name}/infer", summary="Inference (JSON or binary tensors)")
    async def infer(name: str, request: Request) -> Response:
        # Served by Gateway's fast path; declared here for the docs (and reached only if
        # the app is mounted without the front).
        status, body, headers = await handle_infer(
            server, name, {k.lower(): v for k, v in request.headers.raw}, request.receive,
            max_body,
        )  # fmt: skip
        return Response(body, status_code=status,
                        headers={k.decode(): v.decode() for k, v in headers})  # fmt: skip

    @app.get("/v1/plan", summary="The plan being served, its epoch and scaling history")
    async def plan() -> dict[str, Any]:
        return server.plan_doc()

    @app.get("/v1/stats", summary="Counters for load reports: cost, CPU-seconds, per app")
    async def stats() -> dict[str, Any]:
        return server.stats()

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(server.metrics.render(), media_type=PROMETHEUS_TYPE)

    return Gateway(server, app, token, max_body)
