"""Cut a job's input into shards, far more numerous than workers (pull-based balancing).

Small files are packed into shards by count (``records``) or by total size
(``bytes``), so a million tiny files do not become a million shards. Record files
(JSONL, CSV, Parquet) are cut into row ranges. Shard specs are plain JSON-able dicts
that the shard table stores and a worker's reader interprets:

* ``{"files": [path, ...]}`` — each file is one record;
* ``{"file": path, "rows": [start, end]}`` — records ``start <= i < end`` of a record
  file, counted from 0 here (data rows: CSV headers are not counted); record ids
  count from 1 (``name:start+1`` is the first record of this shard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchwise.batch.sources import list_inputs, record_file_rows
from batchwise.config.job import DEFAULT_SHARD_RECORDS, InputSpec, ShardSpec
from batchwise.errors import ConfigError


def _pack(items: list[tuple[Any, int]], shards: ShardSpec) -> list[list[Any]]:
    """Greedy packing in order: close a shard at ``records`` items or before ``bytes``."""
    out: list[list[Any]] = []
    current: list[Any] = []
    size = 0
    per = shards.records or DEFAULT_SHARD_RECORDS
    for item, nbytes in items:
        full = len(current) >= per if shards.bytes is None else size + nbytes > shards.bytes
        if current and full:
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += nbytes
    if current:
        out.append(current)
    return out


def _row_sizes(path: str, size: int, spec: InputSpec) -> list[int]:
    """Byte size of each row; Parquet rows share their file's size evenly."""
    counts = record_file_rows(path, spec)
    if spec.kind != "parquet":
        return counts
    rows = sum(counts)
    return [max(1, size // max(rows, 1))] * rows


def plan_shards(spec: InputSpec, shards: ShardSpec, base: str | Path = ".") -> list[dict[str, Any]]:
    """Shard specs for the job's input, in a deterministic order; errors on empty input."""
    return shards_for(list_inputs(spec, base), spec, shards)


def shards_for(
    files: list[tuple[str, int]], spec: InputSpec, shards: ShardSpec
) -> list[dict[str, Any]]:
    """Shard specs for ``(path, size)`` input files (a listing, or the new files of one)."""
    if spec.kind == "files":
        return [{"files": group} for group in _pack(files, shards)]
    out: list[dict[str, Any]] = []
    for path, size in files:
        sizes = _row_sizes(path, size, spec)
        for rows in _pack(list(enumerate(sizes)), shards):
            out.append({"file": path, "rows": [rows[0], rows[-1] + 1]})
    if not out:
        raise ConfigError(f"input.path: {spec.path!r} matches files but they hold no records")
    return out
