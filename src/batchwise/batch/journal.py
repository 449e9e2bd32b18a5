"""What a job's journal knows about the job itself, beside its shards; the master's lock.

* **Fingerprint**: what determines the job's output — the input (kind, path, mode,
  reader), the pipeline (pre/postprocess; each model's name, model and options), the
  output format and the shard spec. Not: worker counts, backend, lease, attempts,
  batch sizes, threads, queue and prefetch bounds, storage options (credentials).
  It is stored when the journal is made; a job whose fingerprint differs is refused
  (:class:`~batchwise.batch.errors.JobMismatchError`, naming what differs) instead of
  silently resuming someone else's journal.
* **Input manifest**: ``(path, size)`` of every input file the shards were planned
  from. On resume the input is listed again: new files become new shards (the job
  grows); files that changed size or disappeared are refused, since outputs already
  committed would no longer match the input.
* **Runs**: one row per master run, with its outcome (``failed`` with the reason,
  ``stopped`` by a signal, ``finished``) and counts, so ``batch status`` can tell a
  failed job from a finished one and a re-run reports the job's real totals.
* **Lock**: one master per output directory (``flock`` on ``_master.lock``, released by
  the kernel when the master dies), which is what makes handing back every earlier
  lease on start safe.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchwise.batch.errors import JobMismatchError
from batchwise.batch.sharding import shards_for
from batchwise.batch.shards import ShardTable
from batchwise.batch.sources import list_inputs
from batchwise.config.job import JobSpec
from batchwise.errors import BatchwiseError

LOCK_NAME = "_master.lock"
FRESH_HINT = "re-run with --fresh to discard it and start over, or choose another output.path"
OWNED = ("part-*.jsonl", "part-*.parquet", ".part-*.tmp", ".fatal-*", ".ready-*",
         "_journal.db", "_journal.db-wal", "_journal.db-shm", "_report.json",
         "_throughput.png")  # fmt: skip
"""What ``--fresh`` deletes from an output directory: batchwise's own files, nothing else."""
SHOWN = 3
"""Examples named in a message about changed inputs."""


def fingerprint(job: JobSpec) -> dict[str, Any]:
    """The parts of a job that determine its output (JSON-normalised)."""
    p, inp = job.pipeline, job.input
    doc = {
        "input": {"kind": inp.kind, "path": inp.path, "mode": inp.mode, "reader": inp.reader},
        "pipeline": {
            "preprocess": p.preprocess,
            "models": [{"name": m.name, "model": m.model, "options": m.options} for m in p.models],
            "postprocess": p.postprocess,
        },
        "output": {"format": job.output.format},
        "shards": {"records": job.shards.records, "bytes": job.shards.bytes},
    }
    return json.loads(json.dumps(doc, sort_keys=True, default=str))


def differences(old: Any, new: Any, at: str = "") -> list[str]:
    """``field: OLD then, NEW now`` for every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += differences(old.get(key), new.get(key), f"{at}.{key}" if at else key)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True))
                for d in differences(a, b, f"{at}[{i + 1}]")]  # fmt: skip
    return [] if old == new else [f"{at}: {json.dumps(old)} then, {json.dumps(new)} now"]


@dataclass(frozen=True)
class Prepared:
    """What opening the journal for this run did."""

    shards_added: int  # all of them for a new job; for new input files on resume
    inputs_added: int  # input files new since the journal was made (0 for a new job)


def _manifest(table: ShardTable) -> dict[str, int]:
    return {p: s for p, s in table.query("SELECT path, size FROM inputs")}


def _record_inputs(table: ShardTable, files: list[tuple[str, int]]) -> None:
    with table.transaction() as db:
        db.executemany("INSERT OR REPLACE INTO inputs VALUES (?, ?)", files)


def _check_same_input(journal: Path, known: dict[str, int], files: list[tuple[str, int]]) -> None:
    now = dict(files)
    changed = [f"{p} ({known[p]} -> {now[p]} bytes)" for p in known if p in now
               and now[p] != known[p]]  # fmt: skip
    missing = [p for p in known if p not in now]
    if not (changed or missing):
        return
    parts = []
    if changed:
        parts.append(f"{len(changed)} changed size, e.g. {', '.join(changed[:SHOWN])}")
    if missing:
        parts.append(f"{len(missing)} no longer there, e.g. {', '.join(missing[:SHOWN])}")
    raise JobMismatchError(
        f"{journal}: the input changed since this job started ({'; '.join(parts)}), so its "
        f"committed output no longer matches it; {FRESH_HINT}"
    )


def prepare(table: ShardTable, job: JobSpec, base: Path) -> Prepared:
    """Make a new job's shards, or check that the journal is this job's and grow it by
    the input files added since; refuses another job's journal or a changed input."""
    fp = fingerprint(job)
    stored = table.get("fingerprint")
    has_shards = sum(table.counts().values()) > 0
    if stored is not None and stored != fp:
        diff = "; ".join(differences(stored, fp))
        raise JobMismatchError(f"{table.path} belongs to a different job ({diff}); {FRESH_HINT}")
    files = list_inputs(job.input, base)
    if not has_shards or stored is None:  # a new job (or a journal from before manifests)
        added = table.add_shards(shards_for(files, job.input, job.shards)) if not has_shards else 0
        _record_inputs(table, files)
        table.put("fingerprint", fp)
        return Prepared(added, 0)
    known = _manifest(table)
    _check_same_input(table.path, known, files)
    new = [(p, s) for p, s in files if p not in known]
    if not new:
        return Prepared(0, 0)
    added = table.add_shards(shards_for(new, job.input, job.shards), more=True)
    _record_inputs(table, new)
    return Prepared(added, len(new))


# -- runs ---------------------------------------------------------------------------
def begin_run(table: ShardTable) -> int:
    with table.transaction() as db:
        return int(db.execute("INSERT INTO runs(outcome) VALUES ('running')").lastrowid)


def end_run(table: ShardTable, run: int, outcome: str, reason: str | None, *, records: int,
            elapsed_s: float, worker_restarts: int, inputs_added: int) -> None:  # fmt: skip
    with table.transaction() as db:
        db.execute(
            "UPDATE runs SET outcome=?, reason=?, records=?, elapsed_s=?, worker_restarts=?, "
            "inputs_added=? WHERE id=?",
            (outcome, reason, records, elapsed_s, worker_restarts, inputs_added, run),
        )


def history(table: ShardTable) -> dict[str, Any]:
    """Totals over all runs and the last run's outcome (``None`` before the first)."""
    if not table.query("SELECT 1 FROM sqlite_master WHERE name='runs'"):
        return {"runs": 0, "elapsed_s": 0.0, "worker_restarts": 0, "last": None}
    (n, elapsed, restarts), = table.query(
        "SELECT COUNT(*), COALESCE(SUM(elapsed_s), 0), COALESCE(SUM(worker_restarts), 0) "
        "FROM runs"
    )  # fmt: skip
    last = table.query("SELECT outcome, reason FROM runs ORDER BY id DESC LIMIT 1")
    return {"runs": n, "elapsed_s": float(elapsed), "worker_restarts": int(restarts),
            "last": {"outcome": last[0][0], "reason": last[0][1]} if last else None}  # fmt: skip


# -- the master's lock ----------------------------------------------------------------
class MasterLock:
    """Exclusive while held; the kernel drops it when the holder dies (even by SIGKILL)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            self.release()
            raise BatchwiseError(
                f"{out_dir}: another batchwise master (pid {holder}) is running this job; "
                "wait for it to end or stop it first"
            ) from None
        except OSError as exc:  # a filesystem without locks: say so rather than guess
            self.release()
            raise BatchwiseError(f"{self.path}: cannot lock the output directory: {exc}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def master_running(out_dir: Path) -> bool:
    """True while some master holds the directory's lock."""
    try:
        fd = os.open(out_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def remove_outputs(out_dir: Path) -> int:
    """``--fresh``: delete the journal and what earlier runs wrote (batchwise's files only)."""
    n = 0
    for pattern in OWNED:
        for path in out_dir.glob(pattern):
            path.unlink(missing_ok=True)
            n += 1
    return n
