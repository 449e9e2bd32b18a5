"""Batch-inference job files (``batchwise batch JOB.yaml``): typed, validated schema.

Example::

    input:  {kind: files, path: "data/images/*.png"}    # or jsonl / csv with a path
    pipeline:
      preprocess: mypkg.pre:resize                       # optional module:function
      models:
        - {name: encoder, model: minilm, batch_size: 32}  # built-in, .onnx or module:Class
      postprocess: mypkg.post:top1                       # optional module:function
    output: {path: out/scores, format: jsonl}            # one part file per shard
    shards: {records: 1000}                              # or {bytes: 8388608} for small files
    workers: {min: 1, max: 4}                            # or {count: 2}
    backend: local                                       # or ray
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from batchwise.config.loader import load_model

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

DEFAULT_SHARD_RECORDS = 1000
"""Records per shard when the job file does not say."""
DEFAULT_LEASE_S = 30.0
"""Lease of a shard (s); a worker that holds one longer without committing loses it."""
DEFAULT_BATCH_SIZE = 32
"""Records per inference batch when a model entry does not say."""


def _check_callable(v: str | None) -> str | None:
    if v is not None and not _CALLABLE.match(v):
        raise ValueError(f"expected 'module.path:name', got {v!r}")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """What to read: many small files by glob, or record files (one record per row)."""

    kind: Literal["files", "jsonl", "csv"]
    path: str = Field(min_length=1, description="glob (files) or file path/glob (records)")
    reader: str | None = Field(None, description="optional user reader 'module:function'")

    _reader = field_validator("reader")(classmethod(lambda cls, v: _check_callable(v)))


class ModelStage(_Strict):
    """One model of the pipeline; several form a chain, each with its own pool."""

    name: str = Field(min_length=1)
    model: str = Field(min_length=1, description="built-in name, path to .onnx, or module:Class")
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, description="records per batch")
    workers: int = Field(1, ge=1, description="threads/processes of this stage per worker")


class PipelineSpec(_Strict):
    preprocess: str | None = Field(None, description="'module:function' run on each record")
    models: list[ModelStage] = Field(min_length=1)
    postprocess: str | None = Field(None, description="'module:function' run on each output")

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

    records: int | None = Field(None, ge=1)
    bytes: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> ShardSpec:
        if self.records is not None and self.bytes is not None:
            raise ValueError("give either 'records' or 'bytes', not both")
        return self


class WorkerSpec(_Strict):
    """Either a fixed ``count`` or an elastic range ``min``..``max``."""

    count: int | None = Field(None, ge=1)
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=1)

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


class JobSpec(_Strict):
    input: InputSpec
    pipeline: PipelineSpec
    output: OutputSpec
    shards: ShardSpec = ShardSpec(records=DEFAULT_SHARD_RECORDS)
    workers: WorkerSpec = WorkerSpec(count=1)
    backend: Literal["local", "ray"] = "local"
    lease_s: float = Field(
        DEFAULT_LEASE_S,
        gt=0,
        description="shard lease (s): must exceed one shard's processing time",
    )


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job file; errors name the file, the field and the line."""
    return load_model(JobSpec, path)
