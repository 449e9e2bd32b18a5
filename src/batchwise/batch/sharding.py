"""Cut a job's input into shards, far more numerous than workers (pull-based balancing).

Small files are packed into shards by count (``records``) or by total size
(``bytes``), so a million tiny files do not become a million shards. Record files
(JSONL, CSV) are cut into row ranges. Shard specs are plain JSON-able dicts that
the shard table stores and a worker's reader interprets:

* ``{"files": [path, ...]}`` — each file is one record;
* ``{"file": path, "rows": [start, end]}`` — records ``start <= i < end`` of a record
  file (data rows: CSV headers are not counted).
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from batchwise.config.job import DEFAULT_SHARD_RECORDS, InputSpec, ShardSpec
from batchwise.errors import ConfigError


def _matches(spec: InputSpec, base: Path) -> list[Path]:
    pattern = spec.path if Path(spec.path).is_absolute() else str(base / spec.path)
    paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    files = [p for p in paths if p.is_file()]
    if not files:
        raise ConfigError(f"input.path: no files match {spec.path!r} (looked in {base})")
    return files


def _pack_files(files: list[Path], shards: ShardSpec) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current: list[str] = []
    size = 0
    per = shards.records or DEFAULT_SHARD_RECORDS
    for f in files:
        nbytes = f.stat().st_size
        full = len(current) >= per if shards.bytes is None else size + nbytes > shards.bytes
        if current and full:
            out.append({"files": current})
            current, size = [], 0
        current.append(str(f))
        size += nbytes
    if current:
        out.append({"files": current})
    return out


def _row_sizes(path: Path, kind: str) -> list[int]:
    """Byte size of each data row (blank lines skipped; the CSV header excluded)."""
    with path.open("rb") as fh:
        lines = [len(line) for line in fh if line.strip()]
    return lines[1:] if kind == "csv" else lines


def _cut_rows(path: Path, sizes: list[int], shards: ShardSpec) -> list[dict[str, Any]]:
    out = []
    start, acc = 0, 0
    per = shards.records or DEFAULT_SHARD_RECORDS
    for i, nbytes in enumerate(sizes):
        full = (i - start >= per) if shards.bytes is None else (acc + nbytes > shards.bytes)
        if i > start and full:
            out.append({"file": str(path), "rows": [start, i]})
            start, acc = i, 0
        acc += nbytes
    if start < len(sizes):
        out.append({"file": str(path), "rows": [start, len(sizes)]})
    return out


def plan_shards(spec: InputSpec, shards: ShardSpec, base: str | Path = ".") -> list[dict[str, Any]]:
    """Shard specs for the job's input, in a deterministic order; errors on empty input."""
    files = _matches(spec, Path(base))
    if spec.kind == "files":
        return _pack_files(files, shards)
    out: list[dict[str, Any]] = []
    for f in files:
        out.extend(_cut_rows(f, _row_sizes(f, spec.kind), shards))
    if not out:
        raise ConfigError(f"input.path: {spec.path!r} matches files but they hold no records")
    return out
