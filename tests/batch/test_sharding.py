"""Sharding of small files (by count or size) and of record files (row ranges)."""

from __future__ import annotations

import pytest

from batchwise.batch.sharding import plan_shards
from batchwise.config.job import InputSpec, ShardSpec
from batchwise.errors import ConfigError


def make_files(tmp_path, sizes):
    d = tmp_path / "in"
    d.mkdir()
    for i, n in enumerate(sizes):
        (d / f"f{i:03d}.txt").write_bytes(b"x" * n)
    return d


def test_small_files_packed_by_count_cover_every_file_once(tmp_path):
    make_files(tmp_path, [10] * 25)
    shards = plan_shards(InputSpec(kind="files", path="in/*.txt"), ShardSpec(records=10), tmp_path)
    assert [len(s["files"]) for s in shards] == [10, 10, 5]
    every = [f for s in shards for f in s["files"]]
    assert every == sorted(every) and len(set(every)) == 25


def test_small_files_packed_by_bytes(tmp_path):
    make_files(tmp_path, [40, 40, 40, 100, 10, 10])
    shards = plan_shards(InputSpec(kind="files", path="in/*"), ShardSpec(bytes=100), tmp_path)
    # 40+40 (a third 40 would exceed 100), 40, 100 (alone, even at the limit), 10+10
    assert [len(s["files"]) for s in shards] == [2, 1, 1, 2]


def test_jsonl_and_csv_become_row_ranges(tmp_path):
    (tmp_path / "a.jsonl").write_text("".join(f'{{"id": {i}}}\n' for i in range(7)) + "\n")
    (tmp_path / "b.csv").write_text("id,text\n" + "".join(f"{i},t\n" for i in range(5)))
    js = plan_shards(InputSpec(kind="jsonl", path="a.jsonl"), ShardSpec(records=3), tmp_path)
    assert [s["rows"] for s in js] == [[0, 3], [3, 6], [6, 7]]
    cs = plan_shards(InputSpec(kind="csv", path="b.csv"), ShardSpec(records=2), tmp_path)
    assert [s["rows"] for s in cs] == [[0, 2], [2, 4], [4, 5]]  # header not counted


def test_empty_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="no files match"):
        plan_shards(InputSpec(kind="files", path="nothing/*"), ShardSpec(records=1), tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ConfigError, match="hold no records"):
        plan_shards(InputSpec(kind="jsonl", path="empty.jsonl"), ShardSpec(records=1), tmp_path)
