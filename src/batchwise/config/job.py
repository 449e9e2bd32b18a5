"""Batch-inference job files (``batchwise batch JOB.yaml``): typed, validated schema.

Example::

    input:  {kind: files, path: "data/texts/**/*.txt"}  # jsonl / csv / parquet; s3://… too
    pipeline:
      preprocess: mypkg.pre:clean                        # optional module:function
      models:
        - {name: encoder, model: minilm, batch_size: 32}  # built-in, .onnx or module:Class
      postprocess: mypkg.post:top1                       # optional module:function
    output: {path: out/scores, format: parquet}          # one part file per shard
    shards: {records: 500}                               # or {bytes: 8388608} for small files
    workers: {min: 1, max: 4, cpus: 1}                   # or {count: 2}
    backend: local                                       # or ray
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from batchwise.config.base import StrictModel
from batchwise.config.loader import load_model

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

DEFAULT_SHARD_RECORDS = 1000
"""Records per shard when the job file does not say."""
DEFAULT_LEASE_S = 30.0
"""Lease of a shard (s); a worker that holds one longer without committing loses it."""
DEFAULT_BATCH_SIZE = 32
"""Records per inference batch when a model entry does not say."""
DEFAULT_MAX_ATTEMPTS = 3
"""Leases a shard may take; on the last one failing records are isolated and quarantined."""
DEFAULT_QUEUE_BATCHES = 8
"""Bound of each queue between pipeline stages (batches): memory cap and back-pressure."""
DEFAULT_PREFETCH_SHARDS = 1
"""Shards a worker leases and reads ahead of the one it computes."""

# Limits: far above any real job, low enough that a typo cannot hang a machine or exhaust
# its memory (a worker holds whole shards and queue_batches batches per stage in memory).
# The README's "Batch inference" section lists them.
MAX_BATCH_SIZE = 65_536
"""Most records per model call."""
MAX_STAGE_THREADS = 64
"""Most threads per pipeline stage in one worker."""
MAX_QUEUE_BATCHES = 1024
"""Largest bound of a queue between two stages (batches)."""
MAX_PREFETCH_SHARDS = 16
"""Most shards a worker leases and reads ahead."""
MAX_SHARD_RECORDS = 1_000_000
"""Most records per shard (a worker holds a whole shard in memory)."""
MAX_SHARD_BYTES = 1 << 30
"""Largest shard by size (bytes, 1 GiB)."""
MAX_WORKERS = 1024
"""Most workers of one job."""
MAX_WORKER_CPUS = 256.0
"""Most CPUs per worker."""
MAX_ATTEMPTS = 100
"""Most leases per shard."""
MIN_LEASE_S = 1.0
"""Shortest lease (s): heartbeats renew every lease_s/3."""
MAX_LEASE_S = 86_400.0
"""Longest lease (s): one day; a dead worker's shard waits at most this long on another host."""


def _check_callable(v: str | None) -> str | None:
    if v is not None and not _CALLABLE.match(v):
        raise ValueError(f"expected 'module.path:name', got {v!r}")
    return v


_Strict = StrictModel  # strict, finite, closed: see config.base


class InputSpec(_Strict):
    """What to read: many small files by glob, or record files (one record per row)."""

    kind: Literal["files", "jsonl", "csv", "parquet"]
    path: str = Field(
        min_length=1, description="glob or path; local, or any fsspec URL (s3://, gs://, http://)"
    )
    mode: Literal["text", "bytes"] = Field("text", description="files: payload as str or bytes")
    reader: str | None = Field(
        None, description="files: user reader 'module:function' (path, bytes) -> payload"
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="passed to fsspec (credentials, endpoint_url, ...)"
    )

    _reader = field_validator("reader")(classmethod(lambda cls, v: _check_callable(v)))


class ModelStage(_Strict):
    """One model of the pipeline; several form a chain, each with its own pool."""

    name: str = Field(min_length=1)
    model: str = Field(min_length=1, description="built-in name, path to .onnx, or module:Class")
    batch_size: int = Field(
        DEFAULT_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE, description="records per batch"
    )
    workers: int = Field(
        1, ge=1, le=MAX_STAGE_THREADS, description="threads of this stage per worker (start value)"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments for the model's constructor"
    )


class PipelineSpec(_Strict):
    preprocess: str | None = Field(None, description="'module:function' run on each record")
    models: list[ModelStage] = Field(min_length=1)
    postprocess: str | None = Field(None, description="'module:function' run on each output")
    sort_by_size: bool = Field(
        True,
        description="order a shard's records by payload size before batching (less padding);"
        " the output keeps input order",
    )
    queue_batches: int = Field(
        DEFAULT_QUEUE_BATCHES, ge=1, le=MAX_QUEUE_BATCHES, description="stage queue bound"
    )
    prefetch_shards: int = Field(
        DEFAULT_PREFETCH_SHARDS, ge=0, le=MAX_PREFETCH_SHARDS, description="shards read ahead"
    )
    adapt_threads: bool = Field(
        True, description="move threads between stages by queue occupancy (intra-node elasticity)"
    )

    _callables = field_validator("preprocess", "postprocess")(
        classmethod(lambda cls, v: _check_callable(v))
    )

    @field_validator("models")
    @classmethod
    def _unique(cls, models: list[ModelStage]) -> list[ModelStage]:
        names = [m.name for m in models]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"model stage names must be unique; repeated: {sorted(dup)}")
        return models


class OutputSpec(_Strict):
    path: str = Field(min_length=1, description="output directory (journal lives beside parts)")
    format: Literal["jsonl", "parquet"] = "jsonl"


class ShardSpec(_Strict):
    """Shard size: ``records`` per shard, or ``bytes`` (small files packed up to this size)."""

    records: int | None = Field(None, ge=1, le=MAX_SHARD_RECORDS)
    bytes: int | None = Field(None, ge=1, le=MAX_SHARD_BYTES)

    @model_validator(mode="after")
    def _one(self) -> ShardSpec:
        if self.records is not None and self.bytes is not None:
            raise ValueError("give either 'records' or 'bytes', not both")
        return self


class WorkerSpec(_Strict):
    """Either a fixed ``count`` or an elastic range ``min``..``max``."""

    count: int | None = Field(None, ge=1, le=MAX_WORKERS)
    min: int | None = Field(None, ge=0, le=MAX_WORKERS)
    max: int | None = Field(None, ge=1, le=MAX_WORKERS)
    cpus: float = Field(
        1.0,
        gt=0,
        le=MAX_WORKER_CPUS,
        allow_inf_nan=False,
        description="CPUs per worker: model runtime threads; Ray num_cpus per actor",
    )

    @model_validator(mode="after")
    def _range(self) -> WorkerSpec:
        if self.count is not None:
            if self.min is not None or self.max is not None:
                raise ValueError("give either 'count' or 'min'/'max', not both")
        elif self.min is None or self.max is None:
            raise ValueError("give 'count', or both 'min' and 'max'")
        elif self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self

    @property
    def bounds(self) -> tuple[int, int]:
        if self.count is not None:
            return self.count, self.count
        assert self.min is not None and self.max is not None
        return self.min, self.max


class RaySpec(_Strict):
    """How the ``ray`` backend reaches a cluster."""

    address: str | None = Field(
        None, description="Ray address; None: RAY_ADDRESS, else 'auto', else a local instance"
    )


class JobSpec(_Strict):
    input: InputSpec
    pipeline: PipelineSpec
    output: OutputSpec
    shards: ShardSpec = ShardSpec(records=DEFAULT_SHARD_RECORDS)
    workers: WorkerSpec = WorkerSpec(count=1)
    backend: Literal["local", "ray"] = "local"
    ray: RaySpec = RaySpec()
    max_attempts: int = Field(
        DEFAULT_MAX_ATTEMPTS, ge=1, le=MAX_ATTEMPTS, description="leases per shard"
    )
    lease_s: float = Field(
        DEFAULT_LEASE_S,
        ge=MIN_LEASE_S,
        le=MAX_LEASE_S,
        allow_inf_nan=False,
        description="shard lease (s); workers renew it every lease_s/3 while they work",
    )


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job file; errors name the file, the field and the line."""
    return load_model(JobSpec, path)
