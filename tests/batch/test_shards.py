"""Shard table: leases, fencing, exactly-once commit, retries, resume — with a fake clock."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from batchwise.batch.retry import RetryPolicy
from batchwise.batch.shards import ShardTable, StaleLeaseError

LEASE_S = 10.0


@pytest.fixture
def table(tmp_path):
    t = ShardTable(tmp_path / "journal.db", RetryPolicy(max_attempts=2, min_backoff_ms=1000))
    t.add_shards({"files": [f"f{i}.txt"]} for i in range(3))
    yield t
    t.close()


def output(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_lease_commit_flow_publishes_each_shard_once(table, tmp_path):
    done = []
    now = 0.0
    while (lease := table.lease("w1", now, LEASE_S)) is not None:
        tmp = output(tmp_path, f"part-{lease.shard_id}.tmp", str(lease.spec))
        final = tmp_path / f"part-{lease.shard_id}.jsonl"
        assert table.commit(lease, tmp, final)
        done.append(lease.shard_id)
        now += 1
    assert done == [1, 2, 3]
    assert table.finished()
    assert table.counts() == {"todo": 0, "leased": 0, "committed": 3, "quarantined": 0}
    assert sorted(p.name for p in tmp_path.glob("part-*")) == [
        "part-1.jsonl", "part-2.jsonl", "part-3.jsonl",
    ]  # fmt: skip


def test_expired_lease_goes_back_and_the_zombie_cannot_commit(table, tmp_path):
    zombie = table.lease("w1", 0.0, LEASE_S)
    assert zombie.shard_id == 1
    # w1 stalls past its deadline; w2's lease call requeues and takes shard 1.
    fresh = table.lease("w2", LEASE_S + 1, LEASE_S)
    assert fresh.shard_id == 1 and fresh.token > zombie.token and fresh.attempt == 2
    final = tmp_path / "part-1.jsonl"
    assert table.commit(fresh, output(tmp_path, "w2.tmp", "fresh"), final)
    late = output(tmp_path, "w1.tmp", "zombie")
    assert table.commit(zombie, late, final) is False
    assert final.read_text() == "fresh"
    assert not late.exists()
    with pytest.raises(StaleLeaseError):
        table.renew(zombie, LEASE_S + 2, LEASE_S)
    assert table.fail(zombie, "late", LEASE_S + 2) == "stale"


def test_renew_extends_the_deadline(table):
    lease = table.lease("w1", 0.0, LEASE_S)
    lease = table.renew(lease, 9.0, LEASE_S)
    assert lease.deadline == 19.0
    # Not expired at t=15 any more, so another worker gets shard 2, not shard 1.
    assert table.lease("w2", 15.0, LEASE_S).shard_id == 2


def test_failures_back_off_then_quarantine_with_the_error(table):
    first = table.lease("w1", 0.0, LEASE_S)
    assert table.fail(first, "ValueError: bad record", 1.0) == "todo"
    # Backoff: shard 1 is not leased again before t = 2.0; shard 2 is given instead.
    assert table.lease("w1", 1.5, LEASE_S).shard_id == 2
    second = table.lease("w1", 2.0, LEASE_S)
    assert second.shard_id == 1 and second.attempt == 2
    assert table.fail(second, "ValueError: bad record", 3.0) == "quarantined"
    assert table.quarantined() == [
        {"shard": 1, "spec": {"files": ["f0.txt"]}, "attempts": 2,
         "error": "ValueError: bad record"},
    ]  # fmt: skip


def test_resume_after_master_restart_keeps_the_journal(tmp_path):
    path = tmp_path / "journal.db"
    t = ShardTable(path)
    assert t.add_shards({"rows": [i, i + 10]} for i in range(0, 50, 10)) == 5
    lease = t.lease("w1", 0.0, LEASE_S)
    assert t.commit(lease, output(tmp_path, "a.tmp", "x"), tmp_path / "part-1")
    t.lease("w1", 1.0, LEASE_S)  # leased when the master dies
    t.close()
    again = ShardTable(path)
    assert again.add_shards({"rows": [0, 1]} for _ in range(9)) == 0  # the job keeps its shards
    assert again.counts() == {"todo": 3, "leased": 1, "committed": 1, "quarantined": 0}
    assert again.release_owner("w1") == 1
    assert again.counts()["todo"] == 4
    again.close()


def _lease_all(path: str, owner: str, out: mp.Queue) -> None:
    t = ShardTable(path)
    got = []
    while (lease := t.lease(owner, 0.0, 60.0)) is not None:
        got.append(lease.shard_id)
    t.close()
    out.put(got)


def test_concurrent_processes_never_lease_the_same_shard(tmp_path):
    path = tmp_path / "journal.db"
    t = ShardTable(path)
    t.add_shards({"i": i} for i in range(200))
    t.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_lease_all, args=(str(path), f"w{i}", q)) for i in range(3)]
    for p in procs:
        p.start()
    got = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    ids = [i for g in got for i in g]
    assert sorted(ids) == list(range(1, 201))  # each shard exactly once, none lost
