"""Retry rules for failing shards, kept out of the worker (a pure policy).

The shard table asks this policy after every failed attempt and every worker death,
and it stamps each lease with what the policy says about it (``last``, ``guarded``),
so workers never decide retry rules themselves. ``max_attempts`` is stored in the
journal, so every reader of a journal (master, workers, ``batch status``, the Ray
coordinator) applies the job's own rule.

A worker that *dies* (segfault, OOM kill, ``os._exit``) holding a shard uses up that
lease as an attempt, like an exception would. On the last attempt after a death the
shard is *guarded*: computed one record at a time, each record named in the journal
before it runs, so the next death names the record that killed its worker. A record
is quarantined once its worker died :data:`DEFAULT_KILLS_TO_QUARANTINE` times while
computing it alone; deaths that name a record do not use up attempts (each one is
progress, and a shard has finitely many records), nor do deaths while a guarded shard
only waits for its turn. A shard whose workers keep dying without naming a record
(reading it or committing it kills them) is quarantined whole after more than
``max_attempts`` such deaths.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchwise.config.job import DEFAULT_MAX_ATTEMPTS

DEFAULT_MIN_BACKOFF_MS = 500
"""Backoff before the first retry (milliseconds)."""
DEFAULT_MAX_BACKOFF_MS = 30_000
"""Cap of the exponential backoff (milliseconds)."""
DEFAULT_KILLS_TO_QUARANTINE = 3
"""Worker deaths while computing one record alone before that record is quarantined.

Not one: a worker can be killed from outside while it computes a good record (the
OOM killer choosing it for a neighbour's memory, an operator, a node drain), and that
must not cost the record; a record that really kills workers does it every time. Not
two either: a suspect is computed first, within milliseconds of its next worker's
start, and under a storm of outside kills (one every 0.35 s, the kill-storm test) two
of them landed on the same record's few milliseconds about once in 50 jobs (a good
record quarantined, as CI saw). A third coincidence is that chance squared again; a
real killer costs one more worker restart."""


def compute_backoff(attempt: int, base_ms: int, max_ms: int) -> int:
    """Exponential backoff in milliseconds: ``base * 2^(attempt-1)``, capped at ``max_ms``."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return int(min(max_ms, base_ms * 2 ** min(attempt - 1, 32)))


@dataclass(frozen=True)
class RetryDecision:
    """``retry`` True: back to todo not before ``not_before``; False: quarantine."""

    retry: bool
    not_before: float  # earliest time (s, same clock as ``now``) the shard may be leased again


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff; deaths count as attempts."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    min_backoff_ms: int = DEFAULT_MIN_BACKOFF_MS
    max_backoff_ms: int = DEFAULT_MAX_BACKOFF_MS
    kills_to_quarantine: int = DEFAULT_KILLS_TO_QUARANTINE

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.kills_to_quarantine < 1:
            raise ValueError(f"kills_to_quarantine must be >= 1, got {self.kills_to_quarantine}")

    def _retry(self, attempt: int, now: float) -> RetryDecision:
        delay_s = compute_backoff(attempt, self.min_backoff_ms, self.max_backoff_ms) / 1000
        return RetryDecision(True, now + delay_s)

    def decide(self, attempt: int, now: float) -> RetryDecision:
        """After the ``attempt``-th lease of a shard failed at ``now`` (an error, not a death)."""
        if self.is_last(attempt):
            return RetryDecision(False, now)
        return self._retry(attempt, now)

    def is_last(self, attempt: int) -> bool:
        """The ``attempt``-th lease is the last: failing records are isolated, the rest commits."""
        return attempt >= self.max_attempts

    def guarded(self, attempt: int, deaths: int) -> bool:
        """Compute this lease one journaled record at a time (a worker died on the shard)."""
        return self.is_last(attempt) and deaths > 0

    def after_death(self, attempt: int, deaths: int, now: float) -> RetryDecision:
        """The worker died holding the ``attempt``-th lease, no record named; ``deaths``
        such deaths of this shard so far, this one included. No backoff: the worker's
        restart is the pause, and a record that kills workers is isolated sooner."""
        return RetryDecision(deaths <= self.max_attempts, now)

    def record_killed(self, kills: int) -> bool:
        """A record its worker died computing alone ``kills`` times is quarantined."""
        return kills >= self.kills_to_quarantine
