"""What ``batchwise batch`` shows: a live progress bar while running, a report after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchwise.batch.master import JOURNAL_NAME, POLL_S, Master
from batchwise.batch.shards import ShardTable
from batchwise.clock import Stopwatch, WallClock
from batchwise.errors import ConfigError


def job_status(output_dir: Path) -> dict[str, Any]:
    """Shard counts and quarantined shards from the journal of a job's output directory."""
    journal = output_dir / JOURNAL_NAME
    if not journal.exists():
        raise ConfigError(f"{output_dir}: no batch journal ({JOURNAL_NAME}) here")
    table = ShardTable(journal)
    try:
        return {"output": str(output_dir), "shards": table.counts(),
                "quarantined": table.quarantined()}  # fmt: skip
    finally:
        table.close()


def run_job(job_path: Path, console: Any | None) -> dict[str, Any]:
    """Run (or resume) a job to the end; a rich progress bar when ``console`` is given."""
    master = Master(job_path)
    watch = Stopwatch()
    clock = WallClock()
    if console is None:
        report = master.run()
    else:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (
            TextColumn("[bold]shards"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("workers {task.fields[workers]}"), TimeRemainingColumn(),
        )  # fmt: skip
        with Progress(*columns, console=console) as bar:
            counts = master.report()["shards"]
            task = bar.add_task("job", total=sum(counts.values()), workers=0)
            while not master.step():
                counts = master.report()["shards"]
                settled = counts["committed"] + counts["quarantined"]
                bar.update(task, completed=settled, workers=len(master.procs))
                clock.sleep(POLL_S)
            bar.update(task, completed=sum(counts.values()), workers=0)
        report = master.report()
    report["elapsed_s"] = watch.elapsed_s()
    return report
