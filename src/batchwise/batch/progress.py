"""What ``batchwise batch`` shows: a live progress bar while running, a report after.

The report is also saved beside the output (``_report.json``), with a PNG of
throughput and worker count over time (``_throughput.png``). Counts in the report
are the job's over all its runs (``records``, ``worker_restarts``, ``elapsed_s_total``),
with ``*_this_run`` beside them; a re-run of a finished job reports its real totals
and keeps the earlier plot.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from batchwise.batch.errors import JournalError
from batchwise.batch.journal import history, master_running
from batchwise.batch.master import JOURNAL_NAME, Master, journal_summary, stop_on_signals
from batchwise.batch.shards import ShardTable
from batchwise.errors import ConfigError

REPORT_NAME = "_report.json"
PLOT_NAME = "_throughput.png"
RATE_WINDOW_S = 5.0
"""Records/s on the progress bar: average over this many seconds."""


def job_state(
    summary: dict[str, Any], hist: dict[str, Any], running: bool
) -> tuple[str, str | None]:
    """``running``, ``finished``, ``failed`` or ``stopped`` (with why), from the journal."""
    shards = summary["shards"]
    settled = not (shards["todo"] or shards["leased"])
    last = hist["last"]
    if running:
        return "running", None
    if last is not None and last["outcome"] in ("failed", "stopped"):
        return last["outcome"], last["reason"]
    if settled:
        return "finished", None
    if last is not None and last["outcome"] == "running":
        return "stopped", "its master ended without a word (killed?); re-run the job to resume"
    return "stopped", None


def job_status(output_dir: Path) -> dict[str, Any]:
    """A job's state, shard and record counts and what was quarantined, from its journal."""
    if not output_dir.is_dir():
        raise ConfigError(f"{output_dir}: no batch journal here: no such directory")
    journal = output_dir / JOURNAL_NAME
    if not journal.exists():
        raise ConfigError(f"{output_dir}: no batch journal ({JOURNAL_NAME}) here; "
                          "is it a batch job's output directory?")  # fmt: skip
    table = ShardTable(journal, create=False, check=True)
    try:
        summary, hist = journal_summary(table), history(table)
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{journal}: not a readable batch journal ({exc})") from None
    finally:
        table.close()
    state, reason = job_state(summary, hist, master_running(output_dir))
    return {
        "output": str(output_dir),
        "state": state,
        "reason": reason,
        **summary,
        "runs": hist["runs"],
        "worker_restarts": hist["worker_restarts"],
        "elapsed_s_total": hist["elapsed_s"],
    }


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


def _watch(master: Master, console: Any) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]shards"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[records]} records, {task.fields[rate]:.0f}/s"),
        TextColumn("workers {task.fields[workers]}"), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console) as bar:
        counts, records = master.progress
        task = bar.add_task(
            "job",
            total=sum(counts.values()),
            workers=0,
            records=records,
            completed=counts["committed"] + counts["quarantined"],
            rate=0.0,
        )

        def tick(m: Master) -> None:  # counts from the master's last poll: no extra reads
            counts, records = m.progress
            bar.update(
                task, completed=counts["committed"] + counts["quarantined"],
                workers=int(m.timeline[-1]["workers"]), records=records, rate=_rate(m.timeline),
            )  # fmt: skip

        report = master.run(on_tick=tick)
        bar.update(task, completed=sum(report["shards"].values()), workers=0,
                   records=report["records"])  # fmt: skip
    return report


def run_job(
    job_path: Path, console: Any | None, plot: bool = True, fresh: bool = False
) -> dict[str, Any]:
    """Run (or resume) a job to the end; a rich progress bar when ``console`` is given.

    ``fresh``: start over (the old journal and outputs are deleted). SIGINT/SIGTERM stop
    it cleanly (:class:`~batchwise.batch.errors.JobStopped`)."""
    with stop_on_signals():
        master = Master(job_path, fresh=fresh)
        try:
            report = master.run() if console is None else _watch(master, console)
            out = master.out_dir
            if plot and len(master.timeline) > 1 and report["records_this_run"] > 0:
                report["plot"] = str(plot_timeline(master.timeline, out / PLOT_NAME))
            elif (out / PLOT_NAME).exists():  # nothing new this run: an earlier run's plot
                report["plot"] = str(out / PLOT_NAME)
            (out / REPORT_NAME).write_text(json.dumps(report, indent=1), encoding="utf-8")
        finally:
            master.close()
    return report
