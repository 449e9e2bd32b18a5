"""How a batch job ends when it does not finish: user-facing errors and the one internal one.

The CLI prints a :class:`~batchwise.errors.BatchwiseError` as one line and exits 2;
:class:`JobStopped` carries its own exit status (130 for SIGINT, 143 for SIGTERM);
:class:`WorkerCrashed` is a bug in batchwise (exit 1, "internal error").
"""

from __future__ import annotations

from batchwise.errors import BatchwiseError, ConfigError


class JobStartError(BatchwiseError):
    """A worker could not start (its model, options or modules failed): the job stops."""


class JobMismatchError(BatchwiseError):
    """The output directory holds the journal of a different job, or its input changed."""


class JournalError(ConfigError):
    """A journal (``_journal.db``) that cannot be read: corrupt, truncated, not a journal."""


class JobStopped(BatchwiseError):
    """The master was stopped by a signal; its workers are gone and re-running resumes."""

    def __init__(self, signame: str, exit_code: int) -> None:
        self.signame, self.exit_code = signame, exit_code
        super().__init__(f"stopped by {signame}; re-run the same command to resume")


class WorkerCrashed(RuntimeError):
    """A worker thread raised (a bug, not the user's input): the job stops loudly."""
