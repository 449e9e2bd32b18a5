"""Write one shard's rows to a part file (JSONL or Parquet), fsynced, ready to commit.

Rows are ``{"id": record id, "output": value}``. Model outputs are often NumPy
arrays: JSONL writes them as lists; Parquet stores equal-length 1-D arrays as a
fixed-size list column without a Python round trip, other values as Arrow infers
them, and values Arrow cannot type consistently as JSON text (``output_json``).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """NumPy scalars/arrays (also nested in lists/dicts) as plain Python values."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def warm_up(fmt: str) -> None:
    """Write a tiny part to memory before the worker takes a lease, so that its first
    commit takes milliseconds, not the half second of lazy imports (pyarrow imports
    pandas on its first conversion): a death while committing uses up an attempt, so
    that window is kept short."""
    (_write_parquet if fmt == "parquet" else _write_jsonl)([("warm-up", 1)], io.BytesIO())


def part_name(shard_id: int, fmt: str) -> str:
    return f"part-{shard_id:06d}.{fmt}"


def _write_jsonl(rows: list[tuple[str, Any]], fh: Any) -> None:
    for rid, value in rows:
        fh.write((json.dumps({"id": rid, "output": to_jsonable(value)}) + "\n").encode())


def _arrow_outputs(values: list[Any]) -> tuple[str, Any]:
    import pyarrow as pa

    if values and all(isinstance(v, np.ndarray) and v.ndim == 1 for v in values):
        width = len(values[0])
        if all(len(v) == width for v in values):
            flat = pa.array(np.concatenate(values) if width else np.zeros(0))
            return "output", pa.FixedSizeListArray.from_arrays(flat, width)
    try:
        return "output", pa.array([to_jsonable(v) for v in values])
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return "output_json", pa.array([json.dumps(to_jsonable(v)) for v in values])


def _write_parquet(rows: list[tuple[str, Any]], fh: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    name, column = _arrow_outputs([v for _, v in rows])
    table = pa.table({"id": pa.array([r for r, _ in rows], pa.string()), name: column})
    pq.write_table(table, fh)


def write_part(rows: list[tuple[str, Any]], tmp: Path, fmt: str) -> None:
    """Write ``rows`` to ``tmp`` and fsync it (the commit renames it into place)."""
    with tmp.open("wb") as fh:
        (_write_parquet if fmt == "parquet" else _write_jsonl)(rows, fh)
        fh.flush()
        os.fsync(fh.fileno())


def read_part(path: Path) -> list[dict[str, Any]]:
    """Rows of a committed part file (JSONL or Parquet), for tests and tools."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        for r in rows:
            if "output_json" in r:
                r["output"] = json.loads(r.pop("output_json"))
        return rows
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
