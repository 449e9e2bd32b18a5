"""The HTTP gateway: Open Inference Protocol (v2) REST, plan and Prometheus endpoints.

FastAPI for routing and OpenAPI docs; the infer route reads the raw body itself so
that (a) a body over the limit is refused from its ``Content-Length`` before any of
it is read (413), (b) Triton's binary tensor extension works, and (c) every problem
is a 400 naming the field, in the protocol's error shape ``{"error": "..."}``.
Health endpoints need no token (probes); everything else does when one is set.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

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


class BodyTooLarge(Exception):
    pass


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The (decoded) body, refusing more than ``limit`` bytes before reading past it."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(f"body of {int(length)} bytes is over the limit of {limit}")
    chunks, got = [], 0
    async for chunk in request.stream():
        got += len(chunk)
        if got > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "deflate"):
        d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            body = d.decompress(body, limit + 1)
        except zlib.error as exc:
            raise oip.ProtocolError(f"Content-Encoding: cannot decode {encoding} ({exc})") from None
        if len(body) > limit or d.unconsumed_tail:
            raise BodyTooLarge(f"decoded body is over the limit of {limit} bytes")
    elif encoding != "identity":
        raise oip.ProtocolError(f"Content-Encoding: {encoding!r} is not supported")
    return body


def create_app(server: Server, token: str | None = None, max_body: int = DEFAULT_MAX_BODY,
               manage: bool = True) -> FastAPI:  # fmt: skip
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

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if token is not None and not path.startswith("/v2/health"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return error(401, "missing or wrong bearer token",
                             {"WWW-Authenticate": "Bearer"})  # fmt: skip
        return await call_next(request)

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
    @app.post("/v2/models/{name}/versions/{version}/infer", include_in_schema=False)
    async def infer(name: str, request: Request, version: str = "1") -> Response:
        t0 = time.monotonic()
        _known(name)
        try:
            body = await read_body(request, max_body)
            inputs, outputs = server.schema()
            req = oip.decode_infer(body, request.headers.get("inference-header-content-length"),
                                   inputs)  # fmt: skip
        except BodyTooLarge as exc:
            return error(413, str(exc))
        except oip.ProtocolError as exc:
            server.observe(name, time.monotonic() - t0, 400, admitted=False)
            return error(400, str(exc))
        except Unavailable as exc:
            return error(503, str(exc), {"Retry-After": "1"})
        try:
            results = await server.infer(name, req.records)
        except Rejected as exc:
            server.observe(name, time.monotonic() - t0, 503, admitted=False)
            return error(503, str(exc), {"Retry-After": str(int(exc.retry_after_s))})
        except (Unavailable, InstanceLost) as exc:
            server.observe(name, time.monotonic() - t0, 503)
            return error(503, str(exc), {"Retry-After": "1"})
        except ModelError as exc:
            server.observe(name, time.monotonic() - t0, 500)
            return error(500, f"model failed on this batch: {exc}")
        try:
            content, header_len = oip.encode_infer(name, req, results, outputs)
        except (ValueError, TypeError, KeyError) as exc:
            server.observe(name, time.monotonic() - t0, 500)
            return error(500, f"model output does not fit its schema: {exc}")
        headers = {} if header_len is None else {"Inference-Header-Content-Length":
                                                 str(header_len)}  # fmt: skip
        server.observe(name, time.monotonic() - t0, 200)
        media = "application/json" if header_len is None else "application/octet-stream"
        return Response(content, media_type=media, headers=headers)

    @app.get("/v1/plan", summary="The plan being served, its epoch and scaling history")
    async def plan() -> dict[str, Any]:
        return server.plan_doc()

    @app.get("/v1/stats", summary="Counters for load reports: cost, CPU-seconds, per app")
    async def stats() -> dict[str, Any]:
        return server.stats()

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(server.metrics.render(), media_type=PROMETHEUS_TYPE)

    return app
