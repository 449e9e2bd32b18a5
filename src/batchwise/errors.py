"""User-facing errors: the CLI prints these as one clear line, never a traceback.

A :class:`ConfigError` may carry where the problem is (``file``, ``line``,
``field``) separately from what it is (``message``): the CLI prints
``file:line: field: message`` for people and ``{"error", "file", "line", "field"}``
under ``--json`` for scripts, from the same object.
"""

from __future__ import annotations

from typing import Any


class BatchwiseError(Exception):
    """Base class of errors caused by user input, shown without a traceback."""

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` error object."""
        return {"error": str(self), "file": None, "line": None, "field": None}


class ConfigError(BatchwiseError):
    """A configuration or data file is malformed; the message names file, field and line.

    ``context`` says which outer file named this one (``apps.yaml:3: prices``), so an
    error in a price book that an apps file refers to points at both.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        context: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.context = context
        super().__init__(str(self))

    def __str__(self) -> str:
        where = None
        if self.file is not None:
            where = f"{self.file}:{self.line}" if self.line else self.file
        return ": ".join(p for p in (self.context, where, self.field, self.message) if p)

    def within(self, context: str) -> ConfigError:
        """The same error, prefixed with the outer file (and line, field) that led here."""
        outer = f"{context}: {self.context}" if self.context else context
        return ConfigError(
            self.message, file=self.file, line=self.line, field=self.field, context=outer
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": str(self),
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "message": self.message,
        }


class PlanningError(BatchwiseError):
    """No feasible plan exists (e.g. an SLO tighter than any function's latency)."""
