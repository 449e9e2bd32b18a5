"""Where a job's records come from: fsspec paths (local, s3://, gs://, http://) per input kind.

Every input goes through fsspec so that remote object stores work exactly as users
read them elsewhere. A shard's files are fetched with one ``fs.cat`` call, which
async filesystems (s3fs, gcsfs, http) run concurrently: per-object latency of remote
storage overlaps instead of adding up.

A record that cannot be read (missing file, not UTF-8, a JSONL line that is not
JSON) becomes a :class:`RecordError` in its place, so it is isolated and reported
like a record the model fails on, never dropped.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from batchwise.config.job import InputSpec
from batchwise.errors import ConfigError
from batchwise.runtime.registry import load_callable, resolve


@dataclass(frozen=True)
class RecordError:
    """Stands in for a record's value once a stage failed on it (kept for the report)."""

    stage: str
    message: str


Record = tuple[str, Any]  # (record id, payload or RecordError)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def list_inputs(spec: InputSpec, base: str | Path) -> list[tuple[str, int]]:
    """``(path, size in bytes)`` of every input file matching ``spec.path``, sorted."""
    pattern = resolve(spec.path, base)
    try:
        fs, fs_path = fsspec.core.url_to_fs(pattern, **spec.storage_options)
        found = fs.glob(fs_path, detail=True)
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"input.path: cannot list {spec.path!r}: {exc}") from None
    if _is_local(fs):  # follows symlinks (fsspec reports a link as type 'other')
        files = sorted((p, Path(p).stat().st_size) for p in found if Path(p).is_file())
    else:
        files = sorted(
            (fs.unstrip_protocol(p), int(info.get("size") or 0))
            for p, info in found.items()
            if info.get("type") == "file"
        )
    if not files:
        raise ConfigError(f"input.path: no files match {spec.path!r} (looked in {base})")
    return files


def read_bytes(paths: list[str], storage_options: dict[str, Any]) -> dict[str, bytes | Exception]:
    """Fetch many objects at once (concurrently on async filesystems); errors per path."""
    if not paths:
        return {}
    fs, _ = fsspec.core.url_to_fs(paths[0], **storage_options)
    keys = [fs._strip_protocol(p) for p in paths]
    got = fs.cat(keys, on_error="return")
    if not isinstance(got, dict):  # a single path gives the bytes themselves
        got = {keys[0]: got}
    return {p: got.get(k, FileNotFoundError(p)) for p, k in zip(paths, keys, strict=True)}


def _decode_file(path: str, data: bytes | Exception, spec: InputSpec, reader: Any) -> Any:
    if isinstance(data, Exception):
        return RecordError("read", f"{type(data).__name__}: {data}")
    try:
        if reader is not None:
            return reader(path, data)
        return data if spec.mode == "bytes" else data.decode("utf-8")
    except Exception as exc:
        return RecordError("read", f"{type(exc).__name__}: {exc}")


def _text_rows(data: bytes, kind: str) -> list[bytes]:
    """Data rows of a record file (blank lines skipped; the CSV header excluded)."""
    lines = [line for line in data.splitlines() if line.strip()]
    return lines[1:] if kind == "csv" else lines


def record_file_rows(path: str, spec: InputSpec) -> list[int]:
    """Byte size of each record of a JSONL/CSV file, or [row-group rows] for Parquet."""
    if spec.kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with fsspec.open(path, "rb", **spec.storage_options) as fh:
                meta = pq.ParquetFile(fh).metadata
                return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(f"input.path: {path} is not a readable Parquet file: {exc}") from None
    (data,) = read_bytes([path], spec.storage_options).values()
    if isinstance(data, Exception):
        raise ConfigError(f"input.path: cannot read {path}: {data}")
    return [len(r) for r in _text_rows(data, spec.kind)]


def _parse_rows(rows: list[bytes], kind: str, header: bytes | None) -> list[Any]:
    if kind == "csv":
        text = b"\n".join([header or b"", *rows]).decode("utf-8", errors="replace")
        return list(csv.DictReader(io.StringIO(text)))
    out: list[Any] = []
    for line in rows:
        try:
            out.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            out.append(RecordError("read", f"not JSON: {exc}"))
    return out


def _read_parquet(path: str, start: int, end: int, opts: dict[str, Any]) -> list[Any]:
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb", **opts) as fh:
        pf = pq.ParquetFile(fh)
        meta = pf.metadata
        groups, first, offset = [], None, 0
        for i in range(meta.num_row_groups):
            n = meta.row_group(i).num_rows
            if offset + n > start and offset < end:
                groups.append(i)
                first = offset if first is None else first
            offset += n
        table = pf.read_row_groups(groups)
    assert first is not None
    return table.slice(start - first, end - start).to_pylist()


def read_shard(spec: dict[str, Any], inp: InputSpec) -> list[Record]:
    """Records of a shard spec made by :func:`batchwise.batch.sharding.plan_shards`.

    Record ids are stable across retries and resumes: a file's path, or ``name:row``
    for record files, where ``row`` is the record's position among the file's data rows
    counting from 1 (blank lines and a CSV header are not rows; Parquet: the row).
    """
    opts = inp.storage_options
    if "files" in spec:
        reader = load_callable(inp.reader) if inp.reader else None
        blobs = read_bytes(spec["files"], opts)
        return [(p, _decode_file(p, blobs[p], inp, reader)) for p in spec["files"]]
    path = spec["file"]
    start, end = spec["rows"]
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if inp.kind == "parquet":
        values = _read_parquet(path, start, end, opts)
    else:
        (data,) = read_bytes([path], opts).values()
        if isinstance(data, Exception):
            raise OSError(f"cannot read {path}: {data}")
        rows = _text_rows(data, inp.kind)
        header = next((r for r in data.splitlines() if r.strip()), None)
        values = _parse_rows(rows[start:end], inp.kind, header)
    return [(f"{name}:{start + i + 1}", v) for i, v in enumerate(values)]
