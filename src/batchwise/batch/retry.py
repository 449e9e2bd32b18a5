"""Retry rules for failing shards, kept out of the worker (a pure policy)."""

from __future__ import annotations

from dataclasses import dataclass

from batchwise.config.job import DEFAULT_MAX_ATTEMPTS

DEFAULT_MIN_BACKOFF_MS = 500
"""Backoff before the first retry (milliseconds)."""
DEFAULT_MAX_BACKOFF_MS = 30_000
"""Cap of the exponential backoff (milliseconds)."""


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
    """Bounded retries with exponential backoff."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    min_backoff_ms: int = DEFAULT_MIN_BACKOFF_MS
    max_backoff_ms: int = DEFAULT_MAX_BACKOFF_MS

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def decide(self, attempt: int, now: float) -> RetryDecision:
        """After the ``attempt``-th lease of a shard failed at ``now``."""
        if attempt >= self.max_attempts:
            return RetryDecision(False, now)
        delay_s = compute_backoff(attempt, self.min_backoff_ms, self.max_backoff_ms) / 1000
        return RetryDecision(True, now + delay_s)
