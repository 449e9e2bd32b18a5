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
final path, so output is never duplicated.

Time is always passed in (``now``) and only ever compared within one master's run
(an *epoch*): a new master hands back every lease of the previous one
(:meth:`ShardTable.expire_leases`), so deadlines written with another host's clock,
or before a reboot, never hold a shard.

The retry rules are the :class:`~batchwise.batch.retry.RetryPolicy`'s; the job's
``max_attempts`` is stored in the journal, so every reader applies the same rule.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from batchwise.batch.errors import JournalError
from batchwise.batch.retry import RetryPolicy

STATES = ("todo", "leased", "committed", "quarantined")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shards (
    id INTEGER PRIMARY KEY,
    spec TEXT NOT NULL,            -- JSON: what to read (file list or row range)
    state TEXT NOT NULL DEFAULT 'todo',
    owner TEXT,                    -- worker holding the lease
    lease_deadline REAL,           -- lease expires at this time (s, this epoch's clock)
    not_before REAL NOT NULL DEFAULT 0,  -- retry backoff: not leased before (s)
    attempt INTEGER NOT NULL DEFAULT 0,  -- leases taken so far (deaths included)
    token INTEGER NOT NULL DEFAULT 0,    -- fencing token of the current lease
    error TEXT,                    -- last failure, kept for the report
    records INTEGER,               -- records written when committed
    committed_at REAL,             -- commit time (s, the lease clock)
    deaths INTEGER NOT NULL DEFAULT 0,   -- leases that ended in a worker death naming no record
    guard_phase TEXT,              -- guarded lease: read | wait | record | commit (see mark)
    guard_record TEXT              -- guarded lease, phase 'record': the record computing now
);
CREATE TABLE IF NOT EXISTS bad_records (
    shard INTEGER NOT NULL,        -- shard whose final attempt isolated the record
    record TEXT NOT NULL,          -- record id (file, or file:row, rows from 1)
    error TEXT NOT NULL,
    PRIMARY KEY (shard, record)
);
CREATE TABLE IF NOT EXISTS suspects (
    shard INTEGER NOT NULL,
    record TEXT NOT NULL,          -- a record its worker died computing alone
    kills INTEGER NOT NULL,        -- how many times
    reason TEXT NOT NULL,          -- how the last one died (signal, exit status)
    PRIMARY KEY (shard, record)
);
CREATE INDEX IF NOT EXISTS shards_state ON shards(state, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('next_token', 1);
CREATE TABLE IF NOT EXISTS job (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- JSON values
CREATE TABLE IF NOT EXISTS inputs (  -- the input listing the shards were planned from
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL          -- bytes
);
CREATE TABLE IF NOT EXISTS runs (  -- one row per master run (epoch) of the job
    id INTEGER PRIMARY KEY,
    outcome TEXT NOT NULL,         -- running | finished | failed | stopped
    reason TEXT,                   -- failed/stopped: why
    records INTEGER NOT NULL DEFAULT 0,      -- records committed during this run
    elapsed_s REAL NOT NULL DEFAULT 0,
    worker_restarts INTEGER NOT NULL DEFAULT 0,
    inputs_added INTEGER NOT NULL DEFAULT 0  -- input files found new on resume
);
"""
_COLUMNS = {"deaths": "INTEGER NOT NULL DEFAULT 0", "guard_phase": "TEXT", "guard_record": "TEXT"}
_UNGUARD = "guard_phase=NULL, guard_record=NULL"
PHASES = ("read", "wait", "record", "commit")
"""What a guarded lease's worker does: a death in ``record`` names the record; one in
``wait`` (for the worker's other shards to finish) is not this shard's doing."""
"""Columns added since the first journals; a master adds them to an older journal."""


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one shard; only the holder of the current token may commit."""

    shard_id: int
    spec: dict[str, Any]
    token: int
    attempt: int
    deadline: float
    last: bool = False  # the policy's last attempt: failing records are isolated, the rest commits
    guarded: bool = False  # a worker died on it: one journaled record at a time (``mark``)
    suspects: tuple[str, ...] = ()  # records a worker died computing alone: computed first
    killers: tuple[tuple[str, str], ...] = ()  # (record id, why): quarantined, not computed


class StaleLeaseError(Exception):
    """The lease was taken over (expired and re-leased); the caller must drop its work."""


def _killer_error(kills: int, reason: str) -> str:
    return f"died {kills} times computing this record alone (last: {reason})"


class ShardTable:
    """One job's shard journal in ``path``.

    ``create``: make the journal if absent and bring an older one up to date (the
    master); otherwise it must exist already (workers, ``batch status``). ``check``:
    verify the whole file first (corruption is found now, not mid-job). ``retry``: the
    job's policy, stored in the journal; None reads the stored one.
    """

    def __init__(
        self,
        path: str | Path,
        retry: RetryPolicy | None = None,
        *,
        create: bool = True,
        check: bool = False,
    ) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise JournalError(f"{self.path}: no batch journal here")
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot open the batch journal: {exc}") from None
        try:
            self._open(create, check)
            self.retry = self._policy(retry)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise JournalError(f"{self.path}: not a readable batch journal ({exc})") from None

    def _open(self, create: bool, check: bool) -> None:
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")  # reads the header: "file is not a database"
        db.execute("PRAGMA synchronous=FULL")
        if check:
            problems = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems))
        if create:
            db.executescript(_SCHEMA)
            have = {r[1] for r in db.execute("PRAGMA table_info(shards)")}
            for name, decl in _COLUMNS.items():
                if name not in have:
                    db.execute(f"ALTER TABLE shards ADD COLUMN {name} {decl}")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            raise sqlite3.DatabaseError("it is empty: a job just starting, or one that never did")
        if not {"shards", "bad_records", "meta"} <= tables:
            raise sqlite3.DatabaseError("no shard table in it")

    def _policy(self, retry: RetryPolicy | None) -> RetryPolicy:
        if retry is not None:
            if self.get("max_attempts") != retry.max_attempts:
                self.put("max_attempts", retry.max_attempts)
            return retry
        stored = self.get("max_attempts")
        return RetryPolicy(max_attempts=int(stored)) if stored is not None else RetryPolicy()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: one writer at a time across processes."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    _tx = transaction

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read (no transaction: one consistent snapshot per statement)."""
        return self._db.execute(sql, params).fetchall()

    # -- job-level values (JSON) -------------------------------------------------
    def get(self, key: str) -> Any:
        rows = self.query("SELECT value FROM job WHERE key=?", (key,)) if self._has_job() else []
        return json.loads(rows[0][0]) if rows else None

    def put(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO job VALUES (?, ?)", (key, json.dumps(value)))

    def _has_job(self) -> bool:
        return bool(self.query("SELECT 1 FROM sqlite_master WHERE name='job'"))

    # -- shards -----------------------------------------------------------------
    def add_shards(self, specs: Iterable[dict[str, Any]], *, more: bool = False) -> int:
        """Create the job's shards once (a resumed job keeps its own); ``more``: append
        shards to a job that has some (new input files)."""
        with self._tx() as db:
            if not more and db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]:
                return 0
            rows = [(json.dumps(s, sort_keys=True),) for s in specs]
            db.executemany("INSERT INTO shards(spec) VALUES (?)", rows)
            return len(rows)

    def lease(self, owner: str, now: float, lease_s: float) -> Lease | None:
        """Give ``owner`` the lowest todo shard (expired leases first return to todo)."""
        with self._tx() as db:
            db.execute(
                f"UPDATE shards SET state='todo', owner=NULL, {_UNGUARD} "
                "WHERE state='leased' AND lease_deadline < ?",
                (now,),
            )
            row = db.execute(
                "SELECT id, spec, attempt, deaths FROM shards "
                "WHERE state='todo' AND not_before <= ? ORDER BY id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            shard, spec, attempt, deaths = row[0], row[1], row[2] + 1, row[3]
            token = db.execute("SELECT value FROM meta WHERE key='next_token'").fetchone()[0]
            db.execute("UPDATE meta SET value=? WHERE key='next_token'", (token + 1,))
            deadline = now + lease_s
            db.execute(
                "UPDATE shards SET state='leased', owner=?, lease_deadline=?, attempt=?, "
                f"token=?, {_UNGUARD} WHERE id=?",
                (owner, deadline, attempt, token, shard),
            )
            lease = Lease(shard, json.loads(spec), token, attempt, deadline,
                          last=self.retry.is_last(attempt))  # fmt: skip
            if not self.retry.guarded(attempt, deaths):
                return lease
            rows = db.execute(
                "SELECT record, kills, reason FROM suspects WHERE shard=? ORDER BY record",
                (shard,),
            ).fetchall()
        killed = [r for r in rows if self.retry.record_killed(r[1])]
        return replace(
            lease,
            guarded=True,
            suspects=tuple(r[0] for r in rows if not self.retry.record_killed(r[1])),
            killers=tuple((r[0], _killer_error(r[1], r[2])) for r in killed),
        )

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
        return replace(lease, deadline=deadline)

    def mark(
        self, lease: Lease, phase: str, record: str | None = None, done: str | None = None
    ) -> bool:
        """Guarded lease: journal what its worker does from now on (one of ``PHASES``;
        ``record``: the record it computes), and that ``done`` survived (no longer a
        suspect). False: the lease is stale."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        with self._tx() as db:
            if not self._current(db, lease):
                return False
            db.execute(
                "UPDATE shards SET guard_phase=?, guard_record=? WHERE id=?",
                (phase, record if phase == "record" else None, lease.shard_id),
            )
            if done is not None:
                db.execute(
                    "DELETE FROM suspects WHERE shard=? AND record=?", (lease.shard_id, done)
                )
            return True

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
                f"committed_at=?, {_UNGUARD} WHERE id=?",
                (records, now, lease.shard_id),
            )
            db.executemany(
                "INSERT OR REPLACE INTO bad_records VALUES (?, ?, ?)",
                [(lease.shard_id, rid, err) for rid, err in bad],
            )
            db.execute("DELETE FROM suspects WHERE shard=?", (lease.shard_id,))
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
                "UPDATE shards SET state=?, owner=NULL, not_before=?, error=?, "
                f"{_UNGUARD} WHERE id=?",
                (state, decision.not_before, error, lease.shard_id),
            )
        return state

    def release(self, lease: Lease) -> bool:
        """Hand back a shard the holder will not work on (drain): no attempt is used up."""
        with self._tx() as db:
            if not self._current(db, lease):
                return False
            db.execute(
                "UPDATE shards SET state='todo', owner=NULL, attempt=attempt-1, "
                f"{_UNGUARD} WHERE id=?",
                (lease.shard_id,),
            )
            return True

    def release_owner(self, owner: str) -> int:
        """Hand every shard ``owner`` still leases back to todo, no attempt used: it never
        acked them (shutdown, drain) or was stopped by the master, not by the shard."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE shards SET state='todo', owner=NULL, attempt=MAX(attempt-1, 0), "
                f"{_UNGUARD} WHERE state='leased' AND owner=?",
                (owner,),
            )
            return cur.rowcount

    def worker_died(self, owner: str, reason: str, now: float) -> list[tuple[int, str]]:
        """``owner`` died (``reason``: how); charge each shard it held, as the policy says.

        A guarded shard computing a record names it (a suspect, quarantined once the
        policy says so) and is retried; one only waiting for its turn goes back free;
        any other death uses up the attempt. Returns (shard, new state)."""
        out = []
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, attempt, deaths, guard_phase, guard_record FROM shards "
                "WHERE state='leased' AND owner=?",
                (owner,),
            ).fetchall()
            for shard, attempt, deaths, phase, record in rows:
                guarded = self.retry.guarded(attempt, deaths)
                if guarded and phase == "record" and record is not None:
                    self._suspect(db, shard, record, reason)
                    state, error = "todo", f"worker died computing {record} ({reason})"
                elif guarded and phase in (None, "wait"):  # not its doing: as if released
                    state, error, attempt = "todo", f"worker died ({reason})", attempt - 1
                else:
                    deaths += 1
                    decision = self.retry.after_death(attempt, deaths, now)
                    state = "todo" if decision.retry else "quarantined"
                    error = (
                        f"worker died ({reason})"
                        if decision.retry
                        else (f"its workers died {deaths} times holding it (last: {reason})")
                    )
                db.execute(
                    f"UPDATE shards SET state=?, owner=NULL, {_UNGUARD}, not_before=?, "
                    "attempt=?, deaths=?, error=? WHERE id=?",
                    (state, now, attempt, deaths, error, shard),
                )
                out.append((shard, state))
        return out

    def _suspect(self, db: sqlite3.Connection, shard: int, record: str, reason: str) -> None:
        db.execute(
            "INSERT INTO suspects VALUES (?, ?, 1, ?) ON CONFLICT(shard, record) "
            "DO UPDATE SET kills=kills+1, reason=excluded.reason",
            (shard, record, reason),
        )
        (kills,) = db.execute(
            "SELECT kills FROM suspects WHERE shard=? AND record=?", (shard, record)
        ).fetchone()
        if self.retry.record_killed(kills):
            db.execute(
                "INSERT OR REPLACE INTO bad_records VALUES (?, ?, ?)",
                (shard, record, f"worker: {_killer_error(kills, reason)}"),
            )

    def expire_leases(self) -> int:
        """A new master's first act: every lease is a previous master's (whose workers
        died with it) and its deadline is on that master's clock, so hand them all back,
        no attempt used, and forget backoffs measured on that clock."""
        with self._tx() as db:
            n = db.execute(
                f"UPDATE shards SET state='todo', owner=NULL, {_UNGUARD}, "
                "attempt=MAX(attempt-1, 0) WHERE state='leased'"
            ).rowcount
            db.execute("UPDATE shards SET not_before=0 WHERE state='todo' AND not_before<>0")
            return n

    # -- reads --------------------------------------------------------------------
    def progress(self) -> tuple[dict[str, int], int]:
        """Shards per state and records committed: one read, for polling."""
        rows = self.query(
            "SELECT state, COUNT(*), COALESCE(SUM(records), 0) FROM shards GROUP BY state"
        )
        counts = dict.fromkeys(STATES, 0)
        counts.update({r[0]: r[1] for r in rows})
        return counts, int(sum(r[2] for r in rows))

    def counts(self) -> dict[str, int]:
        return self.progress()[0]

    def finished(self) -> bool:
        """True when no shard is todo or leased."""
        c = self.counts()
        return c["todo"] == 0 and c["leased"] == 0

    def records_committed(self) -> int:
        """Output rows committed so far (bad records excluded)."""
        return self.progress()[1]

    def bad_records(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Records isolated and quarantined (shard, record id, error), oldest shard first."""
        sql = "SELECT shard, record, error FROM bad_records ORDER BY shard, record"
        rows = self.query(sql + (f" LIMIT {int(limit)}" if limit else ""))
        return [{"shard": r[0], "record": r[1], "error": r[2]} for r in rows]

    def bad_record_count(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM bad_records")[0][0])

    def quarantined(self) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT id, spec, attempt, error FROM shards WHERE state='quarantined' ORDER BY id"
        )
        return [
            {"shard": r[0], "spec": json.loads(r[1]), "attempts": r[2], "error": r[3]} for r in rows
        ]
