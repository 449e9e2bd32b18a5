"""Read one shard's records, per input kind. Record ids are stable across retries."""

from __future__ import annotations

import csv
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchwise.errors import ConfigError

Record = tuple[str, Any]  # (record id, payload)


def load_callable(ref: str) -> Callable[..., Any]:
    """Import ``module.path:name``; a clear error if it is missing."""
    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {ref!r}: {exc}") from None


def _rows(path: Path, kind: str) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        if kind == "csv":
            return list(csv.DictReader(line for line in fh if line.strip()))
        return [json.loads(line) for line in fh if line.strip()]


def read_shard(spec: dict[str, Any], kind: str) -> list[Record]:
    """Records of a shard spec made by :func:`batchwise.batch.sharding.plan_shards`."""
    if "files" in spec:
        return [(f, Path(f).read_text(encoding="utf-8", errors="replace")) for f in spec["files"]]
    path = Path(spec["file"])
    start, end = spec["rows"]
    rows = _rows(path, kind)[start:end]
    return [(f"{path.name}:{start + i}", r) for i, r in enumerate(rows)]
