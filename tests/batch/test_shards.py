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


def test_a_worker_death_uses_up_the_attempt_and_the_last_attempt_is_guarded(table):
    first = table.lease("w1", 0.0, LEASE_S)
    table.lease("w1", 0.0, LEASE_S)  # read ahead: the death uses up its attempt too
    assert not first.last and not first.guarded
    assert table.worker_died("w1", "killed by SIGSEGV", 1.0) == [(1, "todo"), (2, "todo")]
    again = table.lease("w2", 1.0, LEASE_S)  # retried at once, no backoff
    assert again.shard_id == 1 and again.attempt == 2
    assert again.last and again.guarded  # max_attempts is 2 here
    assert table.quarantined() == []


def test_a_guarded_death_names_its_record_which_is_quarantined_on_the_third(table):
    table.lease("w1", 0.0, LEASE_S)
    table.worker_died("w1", "exit status 70", 0.0)  # attempt 1 of 2: the next is guarded
    lease = table.lease("w2", 0.0, LEASE_S)
    assert lease.guarded and lease.suspects == () and lease.killers == ()
    assert table.mark(lease, "record", "f0.txt:3")
    table.worker_died("w2", "exit status 70", 1.0)
    lease = table.lease("w3", 1.0, LEASE_S)
    assert lease.suspects == ("f0.txt:3",)  # computed first, alone
    assert table.mark(lease, "record", "f0.txt:3")
    table.worker_died("w3", "exit status 70", 2.0)
    lease = table.lease("w4", 2.0, LEASE_S)
    assert lease.suspects == ("f0.txt:3",) and lease.killers == ()  # two kills: still a suspect
    assert table.mark(lease, "record", "f0.txt:3")
    table.worker_died("w4", "killed by SIGKILL", 3.0)
    lease = table.lease("w5", 3.0, LEASE_S)
    why = "died 3 times computing this record alone (last: killed by SIGKILL)"
    assert lease.killers == (("f0.txt:3", why),) and lease.suspects == ()
    assert table.bad_records() == [{"shard": lease.shard_id, "record": "f0.txt:3",
                                    "error": f"worker: {why}"}]  # fmt: skip
    assert table.quarantined() == []  # the shard itself goes on


def test_a_survivor_is_no_suspect_and_deaths_while_waiting_are_free(table):
    table.lease("w1", 0.0, LEASE_S)
    table.worker_died("w1", "x", 0.0)
    lease = table.lease("w2", 0.0, LEASE_S)
    assert lease.attempt == 2 and lease.guarded
    table.mark(lease, "record", "a")
    table.worker_died("w2", "x", 0.0)
    lease = table.lease("w3", 0.0, LEASE_S)
    assert table.mark(lease, "record", "b", done="a")  # "a" computed alone and survived
    assert table.mark(lease, "wait")
    table.worker_died("w3", "x", 0.0)  # waiting for other shards: not this shard's death
    lease = table.lease("w4", 0.0, LEASE_S)
    assert lease.suspects == () and lease.attempt == 3  # neither death used up an attempt
    assert table._db.execute("SELECT deaths FROM shards WHERE id=1").fetchone() == (1,)


def test_workers_dying_without_naming_a_record_quarantine_the_shard(table):
    for i in range(2 + 1):  # max_attempts 2: the third such death gives up
        lease = table.lease("w", 0.0, LEASE_S)
        if lease.guarded:
            table.mark(lease, "read")
        table.worker_died("w", f"killed by SIGKILL #{i + 1}", 0.0)
    (q,) = table.quarantined()
    assert q["shard"] == 1 and q["error"] == (
        "its workers died 3 times holding it (last: killed by SIGKILL #3)"
    )


def test_a_new_master_hands_back_every_lease_and_forgets_old_backoffs(table):
    held = table.lease("w1", 1e6, LEASE_S)  # written with another host's clock
    failed = table.lease("w1", 1e6, LEASE_S)
    table.fail(failed, "flaky", 1e6)  # backoff until 1e6 + 0.5 on that clock
    assert table.expire_leases() == 1
    got = [table.lease("w2", 3.0, LEASE_S) for _ in range(3)]  # our clock reads 3 s
    assert [g.shard_id for g in got] == [1, 2, 3]
    assert got[0].attempt == held.attempt  # handed back: no attempt used


def test_the_retry_policy_is_stored_in_the_journal(tmp_path):
    path = tmp_path / "journal.db"
    ShardTable(path, RetryPolicy(max_attempts=1)).close()
    reader = ShardTable(path, create=False)  # a worker, the coordinator, batch status
    assert reader.retry.max_attempts == 1
    reader.add_shards([{"i": 1}])
    assert reader.lease("w", 0.0, LEASE_S).last  # the job's rule, not a default
    reader.close()


@pytest.mark.parametrize("damage", ["random", "truncated", "not a journal"])
def test_a_damaged_journal_is_a_clear_error(tmp_path, damage):
    import os
    import sqlite3

    from batchwise.batch.errors import JournalError

    path = tmp_path / "journal.db"
    if damage == "random":
        path.write_bytes(os.urandom(8192))
    elif damage == "not a journal":
        sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    else:
        t = ShardTable(path)
        t.add_shards({"files": [f"f{i}" * 50]} for i in range(3000))
        t._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        t.close()
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    with pytest.raises(JournalError, match=r"journal\.db: not a readable batch journal"):
        ShardTable(path, create=damage != "not a journal", check=True)
