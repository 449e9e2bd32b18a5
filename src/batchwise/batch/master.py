"""The job master (local backend): shard the input, keep workers running, report.

The journal (``_journal.db``) lives in the output directory. Restarting the master
with the same job resumes from it: committed shards stay committed, shards that
were leased by dead workers return to todo when their lease expires.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchwise.batch.sharding import plan_shards
from batchwise.batch.shards import ShardTable
from batchwise.clock import WallClock
from batchwise.config.job import JobSpec, load_job

JOURNAL_NAME = "_journal.db"
POLL_S = 0.2
"""How often (s) the master checks its workers."""


@dataclass
class Master:
    """Keeps ``count`` local worker processes alive until every shard is settled."""

    job_path: Path
    job: JobSpec = field(init=False)
    out_dir: Path = field(init=False)
    journal: Path = field(init=False)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    restarts: int = 0
    _seq: int = 0

    def __post_init__(self) -> None:
        self.job = load_job(self.job_path)
        base = self.job_path.parent
        out = Path(self.job.output.path)
        self.out_dir = out if out.is_absolute() else base / out
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.journal = self.out_dir / JOURNAL_NAME
        table = ShardTable(self.journal)
        table.add_shards(plan_shards(self.job.input, self.job.shards, base))
        table.close()

    def _spawn(self) -> None:
        self._seq += 1
        owner = f"local-{os.getpid()}-{self._seq}"
        cmd = [sys.executable, "-m", "batchwise.batch.worker", str(self.journal),
               str(self.job_path), str(self.out_dir), owner]  # fmt: skip
        # User modules named in the job (module:Class) may sit beside the job file.
        env = dict(os.environ)
        extra = str(self.job_path.parent.resolve())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH")) if p)
        self.procs[owner] = subprocess.Popen(cmd, env=env)

    def step(self) -> bool:
        """Reap dead workers, replace them while work remains; True when the job is done."""
        table = ShardTable(self.journal)
        try:
            done = table.finished()
        finally:
            table.close()
        for owner, p in list(self.procs.items()):
            if p.poll() is not None:
                del self.procs[owner]
                # The process is gone, so it can never commit: hand its shards back now
                # instead of waiting for the lease to expire.
                self._release(owner)
                if not done:
                    self.restarts += 1
        target = 0 if done else self.job.workers.bounds[1]
        while len(self.procs) < target:
            self._spawn()
        if done and not self.procs:
            # Temporary parts of workers killed before they committed: nobody owns them.
            for tmp in self.out_dir.glob(".part-*.tmp"):
                tmp.unlink(missing_ok=True)
            return True
        return False

    def _release(self, owner: str) -> None:
        table = ShardTable(self.journal)
        try:
            table.release_owner(owner)
        finally:
            table.close()

    def run(self) -> dict[str, Any]:
        clock = WallClock()
        while not self.step():
            clock.sleep(POLL_S)
        return self.report()

    def kill(self) -> None:
        for p in self.procs.values():
            p.send_signal(signal.SIGKILL)

    def report(self) -> dict[str, Any]:
        table = ShardTable(self.journal)
        try:
            return {
                "shards": table.counts(),
                "quarantined": table.quarantined(),
                "worker_restarts": self.restarts,
                "output": str(self.out_dir),
            }
        finally:
            table.close()
