"""A worker's pipeline stages: thread pools joined by bounded queues.

read → preprocess → model 1 → … → model k → postprocess → write run concurrently;
each queue holds at most ``queue_batches`` batches, so a slow stage pushes back on
the ones before it instead of filling memory. Model runtimes (PyTorch, ONNX
Runtime) and I/O release the GIL, so threads overlap I/O with compute and one
model's batch with the next's.

Failures are per record: a stage that raises on a batch is retried record by
record, and each record that still fails is replaced by a :class:`RecordError`
that later stages pass through untouched. The worker decides what to do with them
(retry the shard, or isolate them on its last attempt).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchwise.batch.models import build_model
from batchwise.batch.sources import RecordError, load_callable
from batchwise.batch.stages import StageStats
from batchwise.config.job import JobSpec

MAP_MAX_THREADS = 4
"""Most threads a per-record (pre/postprocess) stage may grow to."""
POLL_S = 0.1
"""How long (s) a stage thread waits on its queue before checking for shutdown."""


@dataclass
class Batch:
    """Consecutive-in-batch records of one in-flight shard (``shard`` is the worker's key)."""

    shard: int
    index: list[int]  # positions of these records in the shard
    values: list[Any]  # payloads, outputs, or RecordError


def _error(stage: str, exc: BaseException) -> RecordError:
    return RecordError(stage, f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class StageFn:
    """A stage's function; ``batch_size`` 0: per record, else the model's batch size."""

    name: str
    fn: Callable[[Any], Any]
    batch_size: int = 0
    threads: int = 1
    max_threads: int = 1

    def _model_call(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(values), self.batch_size):
            chunk = values[i : i + self.batch_size]
            res = list(self.fn(chunk))
            if len(res) != len(chunk):
                raise RuntimeError(f"model returned {len(res)} outputs for {len(chunk)} inputs")
            out.extend(res)
        return out

    def apply(self, values: list[Any]) -> list[Any]:
        """Run on the values that are not errors; isolate failing records."""
        ok = [i for i, v in enumerate(values) if not isinstance(v, RecordError)]
        out = list(values)
        if not ok:
            return out
        if self.batch_size == 0:
            for i in ok:
                try:
                    out[i] = self.fn(values[i])
                except Exception as exc:
                    out[i] = _error(self.name, exc)
            return out
        try:
            for i, r in zip(ok, self._model_call([values[i] for i in ok]), strict=True):
                out[i] = r
        except Exception as exc:
            if len(ok) == 1:
                out[ok[0]] = _error(self.name, exc)
                return out
            for i in ok:  # isolate: which records make the batch fail?
                try:
                    (out[i],) = self._model_call([values[i]])
                except Exception as single:
                    out[i] = _error(self.name, single)
        return out


def build_stages(job: JobSpec, base: str | Path, cpus: float) -> list[StageFn]:
    """The job's stages in order, models built once (their load errors are fatal)."""
    p = job.pipeline
    stages: list[StageFn] = []
    if p.preprocess:
        stages.append(StageFn("preprocess", load_callable(p.preprocess), 0, 1, MAP_MAX_THREADS))
    for m in p.models:
        top = max(m.workers, int(cpus + 0.999))
        stages.append(StageFn(m.name, build_model(m, base), m.batch_size, m.workers, top))
    if p.postprocess:
        stages.append(StageFn("postprocess", load_callable(p.postprocess), 0, 1, MAP_MAX_THREADS))
    return stages


def put_until(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Blocking put that gives up when ``stop`` is set (never hangs a shutdown)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


class StagePool:
    """Threads running one stage from ``inbox`` to ``outbox``; resizable while running."""

    def __init__(
        self, stage: StageFn, inbox: queue.Queue, outbox: queue.Queue, stop: threading.Event
    ) -> None:
        self.stage, self.inbox, self.outbox, self.stop = stage, inbox, outbox, stop
        self.target = 0
        self.alive = 0
        self.busy_s = 0.0  # total time its threads spent working
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sample = (time.perf_counter(), 0.0)

    def resize(self, n: int) -> None:
        """Run ``n`` threads: start new ones now, surplus ones retire after their batch."""
        with self._lock:
            self.target = max(1, min(n, self.stage.max_threads))
            while self.alive < self.target:
                self.alive += 1
                t = threading.Thread(target=self._loop, name=f"stage-{self.stage.name}",
                                     daemon=True)  # fmt: skip
                self._threads.append(t)
                t.start()

    def _retire(self) -> bool:
        with self._lock:
            if self.alive > self.target:
                self.alive -= 1
                return True
            return False

    def _loop(self) -> None:
        while not self.stop.is_set() and not self._retire():
            try:
                batch: Batch = self.inbox.get(timeout=POLL_S)
            except queue.Empty:
                continue
            t0 = time.perf_counter()
            try:
                batch.values = self.stage.apply(batch.values)
            except BaseException as exc:  # never lose a batch: fail its records instead
                batch.values = [_error(self.stage.name, exc)] * len(batch.values)
            with self._lock:
                self.busy_s += time.perf_counter() - t0
            put_until(self.outbox, batch, self.stop)

    def stats(self) -> StageStats:
        """Queue fill and busy fraction since the previous call."""
        now = time.perf_counter()
        with self._lock:
            t0, busy0 = self._sample
            self._sample = (now, self.busy_s)
            busy = (self.busy_s - busy0) / max((now - t0) * max(self.alive, 1), 1e-9)
        bound = self.inbox.maxsize or 1
        return StageStats(self.stage.name, self.target, self.stage.max_threads,
                          min(1.0, self.inbox.qsize() / bound), min(1.0, busy))  # fmt: skip

    def join(self, timeout: float = 5.0) -> None:
        for t in self._threads:
            t.join(timeout)
