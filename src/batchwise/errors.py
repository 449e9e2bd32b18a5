"""User-facing errors: the CLI prints these as one clear message, never a traceback."""

from __future__ import annotations


class BatchwiseError(Exception):
    """Base class of errors caused by user input, shown without a traceback."""


class ConfigError(BatchwiseError):
    """A configuration or data file is malformed; the message names file, field and line."""


class PlanningError(BatchwiseError):
    """No feasible plan exists (e.g. an SLO tighter than any function's latency)."""
