"""What ``batchwise batch`` shows: a live progress bar while running, a report after.

The report is also saved beside the output (``_report.json``), with a PNG of
throughput and worker count over time (``_throughput.png``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batchwise.batch.master import JOURNAL_NAME, POLL_S, Master
from batchwise.batch.shards import ShardTable
from batchwise.clock import WallClock
from batchwise.errors import ConfigError

REPORT_NAME = "_report.json"
PLOT_NAME = "_throughput.png"
RATE_WINDOW_S = 5.0
"""Records/s on the progress bar: average over this many seconds."""


def job_status(output_dir: Path) -> dict[str, Any]:
    """Shard and record counts and what was quarantined, from a job's journal."""
    journal = output_dir / JOURNAL_NAME
    if not journal.exists():
        raise ConfigError(f"{output_dir}: no batch journal ({JOURNAL_NAME}) here")
    table = ShardTable(journal)
    try:
        return {
            "output": str(output_dir),
            "shards": table.counts(),
            "records": table.records_committed(),
            "bad_records": table.bad_record_count(),
            "quarantined_records": table.bad_records(100),
            "quarantined": table.quarantined(),
        }
    finally:
        table.close()


def plot_timeline(timeline: list[dict[str, float]], path: Path) -> Path:
    """Throughput (records/s, smoothed) and workers over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p["t"] for p in timeline]
    rate = []
    for i, p in enumerate(timeline):
        j = i
        while j > 0 and p["t"] - timeline[j - 1]["t"] <= RATE_WINDOW_S:
            j -= 1
        dt = p["t"] - timeline[j]["t"]
        rate.append((p["records"] - timeline[j]["records"]) / dt if dt > 0 else 0.0)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(t, rate, color="tab:blue", label="records/s")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"records/s ({RATE_WINDOW_S:g} s window)")
    ax2 = ax.twinx()
    ax2.step(t, [p["workers"] for p in timeline], where="post", color="tab:orange",
             label="workers")  # fmt: skip
    ax2.set_ylabel("workers")
    ax2.set_ylim(0, max(p["workers"] for p in timeline) + 1)
    ax2.yaxis.get_major_locator().set_params(integer=True)
    fig.legend(loc="upper right", bbox_to_anchor=(0.86, 0.93), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rate(timeline: list[dict[str, float]]) -> float:
    last = timeline[-1]
    old = next((p for p in timeline if last["t"] - p["t"] <= RATE_WINDOW_S), last)
    dt = last["t"] - old["t"]
    return (last["records"] - old["records"]) / dt if dt > 0 else 0.0


def _watch(master: Master, console: Any) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]shards"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[records]} records, {task.fields[rate]:.0f}/s"),
        TextColumn("workers {task.fields[workers]}"), TimeRemainingColumn(),
    )  # fmt: skip
    clock = WallClock()
    with Progress(*columns, console=console) as bar:
        counts = master.report()["shards"]
        task = bar.add_task("job", total=sum(counts.values()), workers=0, records=0, rate=0.0)
        while not master.step():
            counts = master.report()["shards"]
            point = master.timeline[-1]
            bar.update(
                task, completed=counts["committed"] + counts["quarantined"],
                workers=int(point["workers"]), records=int(point["records"]),
                rate=_rate(master.timeline),
            )  # fmt: skip
            clock.sleep(POLL_S)
        bar.update(task, completed=sum(counts.values()), workers=0)


def run_job(job_path: Path, console: Any | None, plot: bool = True) -> dict[str, Any]:
    """Run (or resume) a job to the end; a rich progress bar when ``console`` is given."""
    master = Master(job_path)
    if console is None:
        report = master.run()
    else:
        try:
            _watch(master, console)
        finally:
            assert master.backend is not None
            master.backend.close()
        report = master.report()
    out = master.out_dir
    if plot and len(master.timeline) > 1:
        report["plot"] = str(plot_timeline(master.timeline, out / PLOT_NAME))
    (out / REPORT_NAME).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report
