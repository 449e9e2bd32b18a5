"""Running the gateway: in the foreground (``batchwise serve``) or on a thread (tests, ``load``).

The listening socket is bound here (port 0 picks a free one, with no race between
choosing and binding), then handed to uvicorn. The serving core starts with the
app's lifespan, so ``/v2/health/live`` answers while instances warm up and
``/v2/health/ready`` turns 200 once every group has a warm instance.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from batchwise import aio
from batchwise.serving.gateway import DEFAULT_MAX_BODY, create_app
from batchwise.serving.server import Server


class _Uvicorn(uvicorn.Server):
    """uvicorn that stops gracefully on SIGINT/SIGTERM without re-raising the signal.

    Why: uvicorn re-raises a captured signal once it has shut down, which turns a
    clean drain into a KeyboardInterrupt traceback; here the signal only asks for the
    graceful shutdown (lifespan: the serving core drains), and ``exit_signal`` tells the
    caller which one came.
    """

    exit_signal: int | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        sigs = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.getsignal(s) for s in sigs}

        def handle(sig: int, frame: Any) -> None:
            self.exit_signal = sig
            self.handle_exit(sig, frame)

        for s in sigs:
            signal.signal(s, handle)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it (Linux): a response's head and body go out at once
    # instead of the body waiting ~40 ms for the client's delayed ACK (Nagle).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Gateway:
    """A :class:`Server` behind uvicorn on ``host:port``."""

    def __init__(self, server: Server, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, max_body: int = DEFAULT_MAX_BODY) -> None:  # fmt: skip
        self.server = server
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.app = create_app(server, token, max_body)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=30)  # fmt: skip
        self.uvicorn = _Uvicorn(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(self) -> None:
        await self.uvicorn.serve(sockets=[self.sock])

    def start_error(self) -> BaseException | None:
        """Why the serving core failed to start, if it did."""
        task: Any = getattr(self.app.api.state, "start", None)
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    # -- on a thread --------------------------------------------------------------------
    def start_thread(self, ready_timeout_s: float = 300.0) -> Gateway:
        """Serve on a daemon thread; return once ready (raise why not, after stopping)."""
        self._thread = threading.Thread(target=lambda: aio.run(self.serve()),
                                        name="batchwise-gateway", daemon=True)  # fmt: skip
        self._thread.start()
        t_end = time.monotonic() + ready_timeout_s
        while not (self.uvicorn.started and self.server.ready()):
            err = self.start_error()
            if err is not None or not self._thread.is_alive() or time.monotonic() > t_end:
                self.stop()
                raise err or RuntimeError("the gateway did not become ready")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=60)
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Gateway:
        return self.start_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop()
