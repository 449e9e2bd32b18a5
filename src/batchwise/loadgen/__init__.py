"""Open-loop HTTP load against a live gateway, and its report (``batchwise load``).

:mod:`~batchwise.loadgen.client` sends every request of an arrival trace at its
scheduled time and records each outcome; :mod:`~batchwise.loadgen.report` turns the
records into the ``--json`` report, tables and a timeline PNG;
:mod:`~batchwise.loadgen.command` is the typer command the CLI registers.
The engine (and aiohttp) is imported only when a run starts.
"""

from batchwise.loadgen.report import Measurement, plot_timeline, print_report, summarize

__all__ = ["Measurement", "plot_timeline", "print_report", "summarize"]
