"""The durable shard table: SQLite (WAL) journal of a job's shards and their leases.

States: ``todo -> leased (owner, deadline, attempt, fencing token) -> committed``,
or ``-> quarantined`` once the retry policy gives up. Workers pull (``lease``); a
lease that expires goes back to todo on the next ``lease`` call.

Delivery guarantee: every shard is *processed* at least once (a worker that dies
mid-shard is redone elsewhere), and its output is *committed* exactly once:
``commit`` renames the worker's temporary file onto the shard's final part file
only while the worker's fencing token is still the shard's current one, inside
the same transaction that marks it committed. A zombie whose lease expired gets
``False`` and its temporary file is deleted. A crash between the rename and the
database commit leaves the shard leased; it is redone and renamed onto the same
final path, so output is never duplicated. Time is always passed in (``now``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchwise.batch.retry import RetryPolicy

STATES = ("todo", "leased", "committed", "quarantined")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shards (
    id INTEGER PRIMARY KEY,
    spec TEXT NOT NULL,            -- JSON: what to read (file list or row range)
    state TEXT NOT NULL DEFAULT 'todo',
    owner TEXT,                    -- worker holding the lease
    lease_deadline REAL,           -- lease expires at this time (s)
    not_before REAL NOT NULL DEFAULT 0,  -- retry backoff: not leased before (s)
    attempt INTEGER NOT NULL DEFAULT 0,  -- leases taken so far
    token INTEGER NOT NULL DEFAULT 0,    -- fencing token of the current lease
    error TEXT,                    -- last failure, kept for the report
    records INTEGER,               -- records written when committed
    committed_at REAL              -- commit time (s, the lease clock)
);
CREATE TABLE IF NOT EXISTS bad_records (
    shard INTEGER NOT NULL,        -- shard whose final attempt isolated the record
    record TEXT NOT NULL,          -- record id (file, or file:row)
    error TEXT NOT NULL,
    PRIMARY KEY (shard, record)
);
CREATE INDEX IF NOT EXISTS shards_state ON shards(state, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('next_token', 1);
"""


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one shard; only the holder of the current token may commit."""

    shard_id: int
    spec: dict[str, Any]
    token: int
    attempt: int
    deadline: float


class StaleLeaseError(Exception):
    """The lease was taken over (expired and re-leased); the caller must drop its work."""


class ShardTable:
    """One job's shard journal in ``path`` (created if absent; reopened to resume)."""

    def __init__(self, path: str | Path, retry: RetryPolicy | None = None) -> None:
        self.path = Path(path)
        self.retry = retry or RetryPolicy()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: one writer at a time across processes."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add_shards(self, specs: Iterable[dict[str, Any]]) -> int:
        """Create the job's shards once; a resumed job (table not empty) keeps its own."""
        with self._tx() as db:
            if db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]:
                return 0
            rows = [(json.dumps(s, sort_keys=True),) for s in specs]
            db.executemany("INSERT INTO shards(spec) VALUES (?)", rows)
            return len(rows)

    def lease(self, owner: str, now: float, lease_s: float) -> Lease | None:
        """Give ``owner`` the lowest todo shard (expired leases first return to todo)."""
        with self._tx() as db:
            db.execute(
                "UPDATE shards SET state='todo', owner=NULL "
                "WHERE state='leased' AND lease_deadline < ?",
                (now,),
            )
            row = db.execute(
                "SELECT id, spec, attempt FROM shards WHERE state='todo' AND not_before <= ? "
                "ORDER BY id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            token = db.execute("SELECT value FROM meta WHERE key='next_token'").fetchone()[0]
            db.execute("UPDATE meta SET value=? WHERE key='next_token'", (token + 1,))
            deadline = now + lease_s
            db.execute(
                "UPDATE shards SET state='leased', owner=?, lease_deadline=?, attempt=attempt+1, "
                "token=? WHERE id=?",
                (owner, deadline, token, row[0]),
            )
            return Lease(row[0], json.loads(row[1]), token, row[2] + 1, deadline)

    def _current(self, db: sqlite3.Connection, lease: Lease) -> bool:
        row = db.execute("SELECT state, token FROM shards WHERE id=?", (lease.shard_id,)).fetchone()
        return row is not None and row[0] == "leased" and row[1] == lease.token

    def renew(self, lease: Lease, now: float, lease_s: float) -> Lease:
        """Extend a live lease (heartbeat); raises StaleLeaseError if it was taken over."""
        with self._tx() as db:
            if not self._current(db, lease) or now > lease.deadline:
                raise StaleLeaseError(f"shard {lease.shard_id}: lease {lease.token} is stale")
            deadline = now + lease_s
            db.execute("UPDATE shards SET lease_deadline=? WHERE id=?", (deadline, lease.shard_id))
        return Lease(lease.shard_id, lease.spec, lease.token, lease.attempt, deadline)

    def commit(
        self,
        lease: Lease,
        tmp_path: str | Path,
        final_path: str | Path,
        records: int = 0,
        bad: Iterable[tuple[str, str]] = (),
        now: float | None = None,
    ) -> bool:
        """Atomically publish the shard's output if the lease is current; else discard it.

        ``records`` is the number of rows written; ``bad`` lists ``(record id, error)`` of
        records isolated on the final attempt, kept in the journal for the report.
        """
        with self._tx() as db:
            if not self._current(db, lease):
                Path(tmp_path).unlink(missing_ok=True)
                return False
            os.replace(tmp_path, final_path)
            db.execute(
                "UPDATE shards SET state='committed', owner=NULL, error=NULL, records=?, "
                "committed_at=? WHERE id=?",
                (records, now, lease.shard_id),
            )
            db.executemany(
                "INSERT OR REPLACE INTO bad_records VALUES (?, ?, ?)",
                [(lease.shard_id, rid, err) for rid, err in bad],
            )
            return True

    def fail(self, lease: Lease, error: str, now: float) -> str:
        """Record a failed attempt; returns the new state ('todo' or 'quarantined', or
        'stale' when the lease was already taken over)."""
        decision = self.retry.decide(lease.attempt, now)
        state = "todo" if decision.retry else "quarantined"
        with self._tx() as db:
            if not self._current(db, lease):
                return "stale"
            db.execute(
                "UPDATE shards SET state=?, owner=NULL, not_before=?, error=? WHERE id=?",
                (state, decision.not_before, error, lease.shard_id),
            )
        return state

    def release(self, lease: Lease) -> bool:
        """Hand back a shard the holder will not work on (drain): no attempt is used up."""
        with self._tx() as db:
            if not self._current(db, lease):
                return False
            db.execute(
                "UPDATE shards SET state='todo', owner=NULL, attempt=attempt-1 WHERE id=?",
                (lease.shard_id,),
            )
            return True

    def release_owner(self, owner: str) -> int:
        """Shutdown: hand every shard ``owner`` still leases back to todo (never acked)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE shards SET state='todo', owner=NULL WHERE state='leased' AND owner=?",
                (owner,),
            )
            return cur.rowcount

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM shards GROUP BY state").fetchall()
        out = dict.fromkeys(STATES, 0)
        out.update(dict(rows))
        return out

    def finished(self) -> bool:
        """True when no shard is todo or leased."""
        c = self.counts()
        return c["todo"] == 0 and c["leased"] == 0

    def records_committed(self) -> int:
        """Output rows committed so far (bad records excluded)."""
        row = self._db.execute("SELECT COALESCE(SUM(records), 0) FROM shards").fetchone()
        return int(row[0])

    def bad_records(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Records isolated and quarantined (shard, record id, error), oldest shard first."""
        sql = "SELECT shard, record, error FROM bad_records ORDER BY shard, record"
        rows = self._db.execute(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [{"shard": r[0], "record": r[1], "error": r[2]} for r in rows]

    def bad_record_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM bad_records").fetchone()[0])

    def quarantined(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, spec, attempt, error FROM shards WHERE state='quarantined' ORDER BY id"
        ).fetchall()
        return [
            {"shard": r[0], "spec": json.loads(r[1]), "attempts": r[2], "error": r[3]} for r in rows
        ]
