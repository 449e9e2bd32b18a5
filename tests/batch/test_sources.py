"""Inputs through fsspec: Parquet/CSV/JSONL row ranges, small files, remote paths, errors."""

from __future__ import annotations

import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchwise.batch.sharding import plan_shards
from batchwise.batch.sinks import read_part, write_part
from batchwise.batch.sources import RecordError, read_shard
from batchwise.config.job import InputSpec, ShardSpec
from batchwise.errors import ConfigError


def all_records(inp: InputSpec, shards: ShardSpec, base) -> list:
    return [r for spec in plan_shards(inp, shards, base) for r in read_shard(spec, inp)]


def test_parquet_row_ranges_cross_row_groups(tmp_path):
    table = pa.table({"id": [f"r{i}" for i in range(95)], "text": [f"t{i}" for i in range(95)]})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=20)
    inp = InputSpec(kind="parquet", path="t.parquet")
    specs = plan_shards(inp, ShardSpec(records=30), tmp_path)
    assert [s["rows"] for s in specs] == [[0, 30], [30, 60], [60, 90], [90, 95]]
    recs = all_records(inp, ShardSpec(records=30), tmp_path)
    assert [rid for rid, _ in recs] == [f"t.parquet:{i}" for i in range(1, 96)]
    assert [v["text"] for _, v in recs] == [f"t{i}" for i in range(95)]


def test_csv_and_jsonl_row_ids_skip_header_and_blank_lines(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n\n3,4\n")
    recs = all_records(InputSpec(kind="csv", path="a.csv"), ShardSpec(records=1), tmp_path)
    assert recs == [("a.csv:1", {"x": "1", "y": "2"}), ("a.csv:2", {"x": "3", "y": "4"})]
    (tmp_path / "b.jsonl").write_text('{"a": 1}\n\nnot json\n')
    recs = all_records(InputSpec(kind="jsonl", path="*.jsonl"), ShardSpec(records=5), tmp_path)
    assert recs[0] == ("b.jsonl:1", {"a": 1})  # data rows from 1; the blank line is no row
    assert isinstance(recs[1][1], RecordError) and recs[1][0] == "b.jsonl:2"


def test_small_files_by_bytes_text_bytes_and_undecodable(tmp_path):
    for i in range(6):
        (tmp_path / f"f{i}.txt").write_bytes(b"x" * 10)
    (tmp_path / "f6.txt").write_bytes(b"\xff\xfe")
    specs = plan_shards(InputSpec(kind="files", path="*.txt"), ShardSpec(bytes=25), tmp_path)
    assert [len(s["files"]) for s in specs] == [2, 2, 3]  # 10+10+2 bytes fit in 25
    text = all_records(InputSpec(kind="files", path="*.txt"), ShardSpec(records=10), tmp_path)
    assert text[0][1] == "x" * 10 and isinstance(text[-1][1], RecordError)
    raw = all_records(InputSpec(kind="files", path="*.txt", mode="bytes"), ShardSpec(), tmp_path)
    assert raw[-1][1] == b"\xff\xfe"


def test_fsspec_urls_work_like_local_paths():
    fs = fsspec.filesystem("memory")
    for i in range(3):
        fs.pipe(f"/corpus/doc{i}.txt", f"doc {i}".encode())
    inp = InputSpec(kind="files", path="memory://corpus/*.txt")
    recs = all_records(inp, ShardSpec(records=2), ".")
    assert [v for _, v in recs] == ["doc 0", "doc 1", "doc 2"]
    assert recs[0][0] == "memory:///corpus/doc0.txt"


def test_no_match_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no files match"):
        plan_shards(InputSpec(kind="jsonl", path="nothing*.jsonl"), ShardSpec(), tmp_path)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_parts_round_trip_arrays_dicts_and_mixed(tmp_path, fmt):
    import numpy as np

    for name, values in {
        "arrays": [np.arange(3, dtype=np.float32), np.ones(3, dtype=np.float32)],
        "dicts": [{"label": 1, "score": 0.5}, {"label": 2, "score": 0.25}],
        "mixed": [1, "two"],
    }.items():
        path = tmp_path / f"{name}.{fmt}"
        write_part([(f"r{i}", v) for i, v in enumerate(values)], path, fmt)
        rows = read_part(path)
        expect = [json.loads(json.dumps(v.tolist() if hasattr(v, "tolist") else v))
                  for v in values]  # fmt: skip
        assert [r["output"] for r in rows] == expect and [r["id"] for r in rows] == ["r0", "r1"]


def test_corrupt_parquet_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ConfigError, match=r"bad.parquet is not a readable Parquet file"):
        plan_shards(InputSpec(kind="parquet", path="bad.parquet"), ShardSpec(), tmp_path)
