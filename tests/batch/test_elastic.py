"""The master's elasticity loop: workers follow the CPUs the machine can give the job.

Workers here are real :class:`Worker` objects on threads (a backend written for the
test), so capacity can be scripted while shards, leases and commits stay real.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from jobfiles import write_job

from batchwise.batch.backends import WorkerExit
from batchwise.batch.controller import WorkerScaler
from batchwise.batch.master import Master
from batchwise.batch.sinks import read_part
from batchwise.batch.worker import Worker, local_tables


class ThreadBackend:
    """Workers as threads; ``free`` is the CPU count the test pretends is free."""

    def __init__(self, master_job: Path) -> None:
        self.job_path = master_job
        self.free = 0.0
        self.workers: dict[str, tuple[Worker, threading.Thread]] = {}
        self.master: Master | None = None

    def spawn(self, owner: str) -> None:
        m = self.master
        assert m is not None
        w = Worker(m.job, self.job_path.parent, m.out_dir, owner, local_tables(m.journal))
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        self.workers[owner] = (w, t)

    def reap(self):
        ended = [o for o, (_, t) in self.workers.items() if not t.is_alive()]
        for o in ended:
            del self.workers[o]
        return [WorkerExit(o) for o in ended]

    def drain(self, owner: str) -> None:
        self.workers[owner][0].draining.set()

    def owners(self):
        return list(self.workers)

    def free_cpus(self) -> float:
        return self.free - len(self.workers)  # each worker takes one of the scripted CPUs

    def kill_all(self) -> None:
        for w, _ in self.workers.values():
            w.draining.set()

    def close(self) -> None:
        for _, t in self.workers.values():
            t.join(10)


def test_workers_grow_and_shrink_with_free_cpus_within_bounds(tmp_path):
    n = 900
    settings = "shards: {records: 5}\nworkers: {min: 1, max: 3}\n"
    job = write_job(tmp_path, n, "bw_test_models:SlowDouble", settings)
    backend = ThreadBackend(job)
    master = Master(job, backend=backend, scaler=WorkerScaler(cooldown_s=0.3))
    backend.master = master
    script = [(0.0, 4.0), (1.5, 1.0), (3.5, 2.0)]  # (time s, CPUs free for the job)
    t0 = time.monotonic()
    seen: list[tuple[float, int]] = []
    while not master.step():
        now = time.monotonic() - t0
        backend.free = [c for t, c in script if t <= now][-1]
        seen.append((now, len([o for o in backend.owners() if o not in master._draining])))
        assert now < 60
        time.sleep(0.05)
    windows = {"big": (0.8, 1.5), "small": (2.3, 3.5), "back": (4.0, 9.0)}
    phase = {k: [w for t, w in seen if lo <= t < hi] for k, (lo, hi) in windows.items()}
    assert max(phase["big"]) == 3  # capped by max, not by the 4 free CPUs
    assert phase["small"] and max(phase["small"]) == 1  # drained down to what is free
    assert phase["back"] and max(phase["back"]) == 2  # and grown again
    rows = [r for p in sorted(master.out_dir.glob("part-*")) for r in read_part(p)]
    assert sorted(int(r["id"].split(":")[1]) for r in rows) == list(range(1, n + 1))
