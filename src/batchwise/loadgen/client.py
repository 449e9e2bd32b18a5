"""The open-loop load engine: one aiohttp session, every request sent at its scheduled time.

Open loop (no coordinated omission): a request is sent when the trace says, however
many are still outstanding, and its latency runs from the *scheduled* send time — if
this process falls behind, the delay counts against the latency (and shows in
``sent_late_p99_s``), instead of silently thinning the load.

This module is the load generator's I/O edge, a backend in the sense of STYLE rule 4:
it alone reads the clock (``time.monotonic`` for every timestamp, ``time.process_time``
for its own CPU), sleeps and talks HTTP. Aggregation is pure and lives in
:mod:`batchwise.loadgen.report`. It runs on uvloop when that is installed (a
dependency of the gateway), else on asyncio's default loop.

Per request the hot path does little Python work: bodies are encoded once per app
(256 variants for BYTES inputs, one otherwise), URLs are parsed once, and a request's
outcome is three numpy stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import numpy as np
from yarl import URL

from batchwise import aio, heap
from batchwise.errors import ConfigError
from batchwise.loadgen.report import (
    CANCELLED,
    CLIENT,
    CONNECT,
    DISCONNECTED,
    NOT_SENT,
    REJECTED,
    TIMEOUT,
    Measurement,
    plan_instances,
)
from batchwise.runtime import samples
from batchwise.traces.base import ArrivalTrace
from batchwise.traces.spec import build_trace

CONNECTION_LIMIT = 2000
"""Most open connections to the gateway (requests beyond wait in aiohttp's pool)."""
FD_RESERVE = 64
"""File descriptors kept free for everything but connections."""
PROBE_TIMEOUT_S = 10.0
"""Timeout (s) of each request that reads the gateway's state (health, plan, stats)."""
START_LEAD_S = 0.05
"""The trace's time 0 is this many seconds after the engine starts (setup is not lateness)."""
MAX_SLEEP_S = 0.1
"""Longest single sleep of the sender (s), so a stop request is seen quickly."""
DRAIN_GRACE_S = 5.0
"""After Ctrl-C: seconds outstanding requests may still finish before they are cancelled."""
SENTENCES = 256
"""Distinct request bodies per app with a BYTES input (request i uses body i mod 256)."""
MAX_INPUT_ELEMENTS = 4_000_000
"""Largest numeric input (elements) a request body may carry."""
MAX_META_CONCURRENCY = 64
"""Concurrent ``GET /v2/models/{app}`` while preparing."""


# -- target ----------------------------------------------------------------------------------
def check_target(url: str, allow_remote: bool) -> str:
    """The gateway's base URL (no trailing slash); only loopback unless ``allow_remote``."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"must be an http:// or https:// URL, got {url!r}", field="TARGET")
    if parts.query or parts.fragment:
        raise ConfigError(f"must be a base URL without query or fragment, got {url!r}",
                          field="TARGET")  # fmt: skip
    try:
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"{exc} in {url!r}", field="TARGET") from None
    if not host:
        raise ConfigError(f"names no host: {url!r}", field="TARGET")
    if not allow_remote and not _is_loopback(host):
        raise ConfigError(f"{host} is not this machine (127.0.0.1, localhost or ::1); "
                          "pass --allow-remote to send load to another host",
                          field="TARGET")  # fmt: skip
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- request bodies --------------------------------------------------------------------------
def sentences(seed: int, n: int = SENTENCES) -> list[str]:
    """``n`` deterministic sentences (shared with the profiler, so it measures these)."""
    return samples.sentences(seed, n)


def _tensor(app: str, spec: Any, text: str) -> dict[str, Any]:
    """One input of one record: BYTES filled with ``text``, numbers with zeros; -1 → 1."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"app {app!r}: the gateway lists an input without a name: {spec!r}")
    name, dtype, dims = spec["name"], spec.get("datatype"), spec.get("shape")
    if not isinstance(dims, list) or not all(isinstance(d, int) and d >= -1 for d in dims):
        raise ConfigError(f"app {app!r}: input {name!r} has an unusable shape {dims!r}")
    shape = [1 if d == -1 else d for d in dims] or [1]
    count = math.prod(shape)
    if count > MAX_INPUT_ELEMENTS:
        raise ConfigError(f"app {app!r}: input {name!r} of shape {dims} has {count} elements; "
                          f"the load generator sends at most {MAX_INPUT_ELEMENTS}")  # fmt: skip
    if dtype == "BYTES":
        data: list[Any] = [text] * count
    elif dtype == "BOOL":
        data = [False] * count
    elif isinstance(dtype, str) and dtype[:2] in ("FP", "IN", "UI", "BF"):
        data = [0] * count
    else:
        raise ConfigError(f"app {app!r}: input {name!r} has an unknown datatype {dtype!r}")
    return {"name": name, "shape": shape, "datatype": dtype, "data": data}


def request_bodies(app: str, meta: Mapping[str, Any], seed: int) -> list[bytes]:
    """Encoded infer bodies for ``app`` from its ``GET /v2/models/{app}`` metadata."""
    inputs = meta.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ConfigError(f"app {app!r}: the gateway's metadata lists no inputs")
    has_text = any(isinstance(s, dict) and s.get("datatype") == "BYTES" for s in inputs)
    texts = sentences(seed) if has_text else [""]
    return [
        json.dumps({"inputs": [_tensor(app, s, t) for s in inputs]}, separators=(",", ":")).encode()
        for t in texts
    ]


# -- options and the plan ----------------------------------------------------------------------
@dataclass(frozen=True)
class LoadOptions:
    """What ``batchwise load`` was asked to do (validated by the command)."""

    target: str  # gateway URL
    traces: list[str] = field(default_factory=lambda: ["poisson"])  # --trace specs
    duration_s: float = 60.0  # seconds of trace to send
    rate_scale: float = 1.0  # multiplies the plan's rates
    seed: int = 0  # seeds the trace and the request bodies
    window_s: float = 10.0  # timeline window and poll/progress interval (s)
    timeout_s: float = 30.0  # per-request client timeout (s)
    token: str | None = None  # bearer token
    allow_remote: bool = False  # allow a non-loopback target


@dataclass(frozen=True)
class Served:
    """What the gateway serves: from ``/v1/plan`` and ``/v2/models/{app}``."""

    apps: list[str]  # in plan order
    rates: dict[str, float]  # planned req/s per app (sum over the groups)
    slos: dict[str, float]  # SLO (s) per app
    bodies: dict[str, list[bytes]]  # encoded infer bodies per app


@dataclass(frozen=True)
class Progress:
    """A snapshot the engine reports once per window."""

    t_s: float  # seconds of trace time elapsed
    duration_s: float
    sent: int
    ok: int
    rejected: int
    errors: int
    outstanding: int
    instances: int | None


def served_plan(doc: Any, base: str) -> tuple[list[str], dict[str, float], dict[str, float]]:
    """Apps, planned rates and SLOs from a ``/v1/plan`` document."""
    try:
        groups = doc["plan"]["groups"]
        apps: list[str] = []
        rates: dict[str, float] = {}
        slos: dict[str, float] = {}
        for g in groups:
            for a in g["apps"]:
                if a not in rates:
                    apps.append(a)
                rates[a] = rates.get(a, 0.0) + float(g["rates"][a])
                slos[a] = float(g["slos"][a])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{base}/v1/plan is not a batchwise plan document "
                          f"(missing or bad {exc})") from None  # fmt: skip
    if not apps:
        raise ConfigError(f"{base}/v1/plan serves no apps")
    return apps, rates, slos


# -- HTTP helpers ----------------------------------------------------------------------------
async def _get(session: aiohttp.ClientSession, url: str, base: str) -> tuple[int, Any]:
    """``(status, JSON or None)``; an unreachable gateway is a ConfigError."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as r:
            raw = await r.read()
            status = r.status
    except TimeoutError:
        raise ConfigError(f"cannot reach the gateway at {base}: no answer from {url} "
                          f"within {PROBE_TIMEOUT_S:g} s") from None  # fmt: skip
    except aiohttp.ClientError as exc:
        os_error = getattr(exc, "os_error", None)  # connection refused, no route, bad name
        why = str(exc)
        if os_error is not None:
            code = os_error.errno  # > 0: an OS errno; < 0: a resolver (gai) error
            why = os.strerror(code) if code and code > 0 else os_error.strerror or str(os_error)
        raise ConfigError(f"cannot reach the gateway at {base}: {why}") from None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


async def _get_ok(session: aiohttp.ClientSession, base: str, path: str) -> Any:
    status, doc = await _get(session, base + path, base)
    if status == 401:
        raise ConfigError(f"the gateway at {base} refused the bearer token (401 on {path}); "
                          "pass --token or set BATCHWISE_TOKEN")  # fmt: skip
    if status != 200 or doc is None:
        why = doc.get("error") if isinstance(doc, dict) else None
        raise ConfigError(f"GET {base}{path} answered {status}"
                          + (f": {why}" if why else "; is it a batchwise gateway?"))  # fmt: skip
    return doc


async def probe(session: aiohttp.ClientSession, base: str, seed: int) -> tuple[Served, Any, Any]:
    """Check readiness, read the plan and stats, build every app's request bodies."""
    status, _ = await _get(session, base + "/v2/health/ready", base)
    if status != 200:
        raise ConfigError(f"gateway at {base} is not ready (GET /v2/health/ready answered "
                          f"{status}); wait until its instances are warm")  # fmt: skip
    plan_doc = await _get_ok(session, base, "/v1/plan")
    stats = await _get_ok(session, base, "/v1/stats")
    apps, rates, slos = served_plan(plan_doc, base)
    sem = asyncio.Semaphore(MAX_META_CONCURRENCY)
    cache: dict[str, list[bytes]] = {}

    async def bodies(app: str) -> list[bytes]:
        async with sem:
            meta = await _get_ok(session, base, f"/v2/models/{quote(app, safe='')}")
        key = json.dumps(meta.get("inputs"), sort_keys=True) if isinstance(meta, dict) else ""
        if key not in cache:
            cache[key] = request_bodies(app, meta if isinstance(meta, dict) else {}, seed)
        return cache[key]

    got = await asyncio.gather(*(bodies(a) for a in apps))
    return Served(apps, rates, slos, dict(zip(apps, got, strict=True))), plan_doc, stats


def _connection_limit() -> int:
    """:data:`CONNECTION_LIMIT`, raising this process's open-file limit to fit if it can."""
    try:
        import resource
    except ImportError:  # not POSIX
        return CONNECTION_LIMIT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CONNECTION_LIMIT + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):  # keep the old limit; fit below it
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_LIMIT
    return max(16, min(CONNECTION_LIMIT, soft - FD_RESERVE))


def _session(opts: LoadOptions) -> aiohttp.ClientSession:
    headers = {"Content-Type": "application/json"}
    if opts.token:
        headers["Authorization"] = f"Bearer {opts.token}"
    connector = aiohttp.TCPConnector(limit=_connection_limit(), limit_per_host=0,
                                     ttl_dns_cache=300)  # fmt: skip
    return aiohttp.ClientSession(connector=connector, headers=headers, trust_env=False,
                                 timeout=aiohttp.ClientTimeout(total=opts.timeout_s),
                                 cookie_jar=aiohttp.DummyCookieJar())  # fmt: skip


def schedule(trace: ArrivalTrace, apps: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All arrivals merged in time order: ``(times, app index)`` (stable for equal times)."""
    unknown = sorted(set(trace.arrivals) - set(apps))
    if unknown:
        raise ConfigError(f"the trace drives apps the gateway does not serve: {unknown[:10]}")
    index = {a: k for k, a in enumerate(apps)}
    parts = [(np.asarray(t, dtype=np.float64), index[a]) for a, t in trace.arrivals.items()]
    if not parts:
        return np.zeros(0), np.zeros(0, np.int32)
    times = np.concatenate([t for t, _ in parts])
    which = np.concatenate([np.full(len(t), k, np.int32) for t, k in parts])
    order = np.argsort(times, kind="stable")
    return times[order], which[order]


# -- the engine ------------------------------------------------------------------------------
class Engine:
    """Sends one request per scheduled time, records each outcome, polls instances."""

    def __init__(self, session: aiohttp.ClientSession, base: str, served: Served,
                 sched_s: np.ndarray, app: np.ndarray, duration_s: float, window_s: float,
                 on_progress: Callable[[Progress], None] | None = None) -> None:  # fmt: skip
        self.session, self.base = session, base
        self.urls = [URL(f"{base}/v2/models/{quote(a, safe='')}/infer") for a in served.apps]
        self.bodies = [served.bodies[a] for a in served.apps]
        self.sched_s, self.app = sched_s, app
        self.duration_s, self.window_s = duration_s, window_s
        self.on_progress = on_progress
        n = len(sched_s)
        self.status = np.full(n, NOT_SENT, np.int32)
        self.latency_s = np.full(n, np.nan)
        self.late_s = np.full(n, np.nan)
        self.sent = self.ok = self.rejected = self.errors = 0
        self.polls: list[tuple[float, int | None]] = []
        self.poll_errors = 0
        self.pending: set[asyncio.Task[None]] = set()
        self.stopping = False  # Ctrl-C once: stop sending, wait DRAIN_GRACE_S
        self.forced = False  # Ctrl-C twice: cancel what is outstanding now
        self.failure: BaseException | None = None
        self.stop_signal: int | None = None
        self.t0 = 0.0  # monotonic time of the trace's time 0
        self.clock: Callable[[], float] = time.monotonic
        self.sent_until_s = duration_s

    def request_stop(self, signum: int | None = None) -> None:
        """Stop sending (first call) / stop waiting for answers (second call)."""
        if self.stopping:
            self.forced = True
        elif signum is not None:
            self.stop_signal = signum
        self.stopping = True

    async def run(self) -> float:
        """Send the whole schedule (or until stopped), wait for answers; elapsed seconds."""
        loop = asyncio.get_running_loop()
        self.t0 = self.clock() + START_LEAD_S
        poller = loop.create_task(self._poll_loop())
        try:
            await self._send_all(loop)
            await self._drain()
            self._unstarted_are_cancelled(self.clock() - self.t0)
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        if self.failure is not None:
            raise self.failure
        return self.clock() - self.t0

    async def _send_all(self, loop: asyncio.AbstractEventLoop) -> None:
        sched, n, i = self.sched_s, len(self.sched_s), 0
        # Invariant: requests [0, i) have been handed to a task, none of [i, n) has.
        while i < n and not self.stopping:
            now = self.clock() - self.t0
            if sched[i] > now:
                await asyncio.sleep(min(float(sched[i]) - now, MAX_SLEEP_S))
                continue
            j = int(np.searchsorted(sched, now, side="right"))
            for k, a in zip(range(i, j), self.app[i:j].tolist(), strict=True):
                task = loop.create_task(self._one(k, a))
                self.pending.add(task)
                task.add_done_callback(self._done)
            self.sent += j - i
            i = j
            await asyncio.sleep(0)
        if i < n:  # stopped early: the trace up to now was sent, the rest never is
            self.sent_until_s = min(self.duration_s, max(0.0, self.clock() - self.t0))

    async def _one(self, i: int, app: int) -> None:
        clock, t_sched = self.clock, self.t0 + self.sched_s[i]
        self.late_s[i] = clock() - t_sched
        bodies = self.bodies[app]
        code = 0
        try:
            async with self.session.post(self.urls[app], data=bodies[i % len(bodies)]) as resp:
                await resp.read()
                code = resp.status
        except TimeoutError:
            code = TIMEOUT
        except aiohttp.ClientConnectorError:
            code = CONNECT
        except aiohttp.ServerDisconnectedError:
            code = DISCONNECTED
        except aiohttp.ClientError:
            code = CLIENT
        except asyncio.CancelledError:
            self.status[i], self.latency_s[i] = CANCELLED, clock() - t_sched
            self.errors += 1
            raise
        self.latency_s[i] = clock() - t_sched
        self.status[i] = code
        if 200 <= code < 300:
            self.ok += 1
        elif code == REJECTED:
            self.rejected += 1
        else:
            self.errors += 1

    def _unstarted_are_cancelled(self, now_s: float) -> None:
        """A task cancelled before its first step never ran ``_one``: sent, then cancelled."""
        head = self.status[: self.sent]
        never = np.flatnonzero(head == NOT_SENT)
        if len(never):
            self.status[never] = CANCELLED
            self.latency_s[never] = self.late_s[never] = now_s - self.sched_s[never]
            self.errors += len(never)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()  # a bug, not an outcome: re-raised by run()
            self.stopping = True

    async def _drain(self) -> None:
        """Wait for outstanding answers (their own timeout bounds this), or cancel them."""
        t_end = self.clock() + (DRAIN_GRACE_S if self.stopping else math.inf)
        while self.pending and not self.forced:
            was_stopping = self.stopping
            await asyncio.wait(set(self.pending), timeout=MAX_SLEEP_S)
            if self.stopping and not was_stopping:  # Ctrl-C while draining
                t_end = min(t_end, self.clock() + DRAIN_GRACE_S)
            if self.clock() >= t_end:
                break
        for task in list(self.pending):
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)

    async def _poll_loop(self) -> None:
        """Read ``/v1/plan`` every window: instances for the timeline, progress for people."""
        k = 0
        while True:
            k += 1
            delay = self.t0 + k * self.window_s - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            t = self.clock() - self.t0
            n = await self.instances()
            self.polls.append((t, n))
            if self.on_progress is not None:
                self.on_progress(Progress(min(t, self.duration_s), self.duration_s, self.sent,
                                          self.ok, self.rejected, self.errors,
                                          len(self.pending), n))  # fmt: skip

    async def instances(self) -> int | None:
        """Instances over all groups now; None (counted in poll_errors) if no answer."""
        timeout = aiohttp.ClientTimeout(total=min(PROBE_TIMEOUT_S, max(1.0, self.window_s)))
        try:
            async with self.session.get(self.base + "/v1/plan", timeout=timeout) as r:
                doc = await r.json(content_type=None) if r.status == 200 else None
            return int(sum(g["instances"] for g in doc["groups"]))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            self.poll_errors += 1  # the gateway is busy or gone: the timeline says "unknown"
            return None


@contextlib.contextmanager
def _stop_on_signals(engine: Engine) -> Iterator[None]:
    """Ctrl-C / SIGTERM stop the engine (main thread only; elsewhere: nothing to catch)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    installed = []
    for s in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(s, engine.request_stop, int(s))
            installed.append(s)
        except (NotImplementedError, RuntimeError, ValueError):  # no signal support here
            pass
    try:
        yield
    finally:
        for s in installed:
            loop.remove_signal_handler(s)


# -- the whole run ---------------------------------------------------------------------------
async def _read_after(session: aiohttp.ClientSession, base: str, m: Measurement) -> None:
    for path, attr in (("/v1/stats", "stats_after"), ("/v1/plan", "plan_after")):
        try:
            setattr(m, attr, await _get_ok(session, base, path))
        except ConfigError as exc:  # the load was measured; say what is missing
            m.warnings.append(f"could not read {path} after the run: {exc}")


async def _run(base: str, opts: LoadOptions, trace: ArrivalTrace | None,
               on_progress: Callable[[Progress], None] | None,
               engine_ready: Callable[[Engine], None] | None) -> Measurement:  # fmt: skip
    async with _session(opts) as session:
        served, plan_before, stats_before = await probe(session, base, opts.seed)
        rates = {a: r * opts.rate_scale for a, r in served.rates.items()}
        if trace is None:
            trace = build_trace(list(opts.traces), rates, opts.seed, opts.duration_s)
        sched, app = schedule(trace, served.apps)
        if len(sched) == 0:
            raise ConfigError(
                f"the trace has no requests in {trace.duration_s:g} s "
                f"(planned rates: {rates}); raise --rate-scale or --duration"
            )
        engine = Engine(session, base, served, sched, app, trace.duration_s, opts.window_s,
                        on_progress)  # fmt: skip
        heap.settle()  # a full collection mid-run is a pause in every latency it measures
        if engine_ready is not None:  # last before the run: a caller's timer starts with it
            engine_ready(engine)
        cpu0 = time.process_time()
        with _stop_on_signals(engine):
            elapsed = await engine.run()
        m = Measurement(
            target=base, apps=served.apps, slos=served.slos, planned_rates=rates,
            sched_s=sched, app=app, status=engine.status, latency_s=engine.latency_s,
            late_s=engine.late_s, duration_s=trace.duration_s,
            sent_until_s=engine.sent_until_s, elapsed_s=elapsed,
            interrupted=engine.stopping, stop_signal=engine.stop_signal, window_s=opts.window_s,
            polls=[(0.0, plan_instances(plan_before)), *engine.polls],
            poll_errors=engine.poll_errors, stats_before=stats_before,
            plan_before=plan_before, loadgen_cpu_s=time.process_time() - cpu0,
            settings={"traces": list(opts.traces), "seed": opts.seed,
                      "rate_scale": opts.rate_scale, "timeout_s": opts.timeout_s},
        )  # fmt: skip
        await _read_after(session, base, m)
        if m.plan_after is not None:
            m.polls.append((elapsed, plan_instances(m.plan_after)))
        return m


def run_load(opts: LoadOptions, trace: ArrivalTrace | None = None,
             on_progress: Callable[[Progress], None] | None = None,
             engine_ready: Callable[[Engine], None] | None = None) -> Measurement:  # fmt: skip
    """Probe the gateway, send the trace open-loop, and return what was measured.

    ``trace``: send exactly these arrivals (default: built from ``opts.traces`` at the
    plan's rates × ``rate_scale``). ``on_progress``: called once per window.
    ``engine_ready``: called with the engine before the first send (tests use it to
    stop a run). A problem found before the load starts is a :class:`ConfigError`.
    """
    base = check_target(opts.target, opts.allow_remote)
    return aio.run(_run(base, opts, trace, on_progress, engine_ready))
