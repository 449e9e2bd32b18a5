"""Guardrails for scaling decisions: bounds, hysteresis and cooldown, composed by one wrapper.

Why separate: a policy says what it *wants* (workers for the backlog, instances for the
queue); whether it may have it now is the same question for every controller — within
``[lo, hi]``, a change that persisted long enough (hysteresis: no flapping on one noisy
sample) and not too soon after the previous one (cooldown: let the last change show
its effect). Ray Serve keeps these apart too (``_apply_bounds``, ``_apply_delay_logic``);
here they are pure functions on a frozen :class:`GuardState`, so a custom policy
inherits them by calling :func:`guard`, and each is testable on its own with a fake clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Guardrails:
    """Invariant: ``lo <= hi``; every delay is >= 0 seconds."""

    lo: int  # smallest value allowed
    hi: int  # largest value allowed
    cooldown_s: float = 0.0  # least time between two changes
    up_delay_s: float = 0.0  # an increase must be wanted this long before it happens
    down_delay_s: float = 0.0  # a decrease must be wanted this long before it happens

    def __post_init__(self) -> None:
        if self.lo > self.hi:
            raise ValueError(f"lo ({self.lo}) must not exceed hi ({self.hi})")
        if min(self.cooldown_s, self.up_delay_s, self.down_delay_s) < 0:
            raise ValueError("delays must be >= 0")


@dataclass(frozen=True)
class GuardState:
    """What the guardrails remember between decisions."""

    value: int = -1  # the value in force (-1: none yet; the first decision takes effect)
    last_change: float = -math.inf  # when ``value`` last changed (s)
    wanted: int | None = None  # a different value being wanted, not yet granted
    wanted_since: float = math.inf  # since when it has been wanted (s)


def apply_bounds(want: int, lo: int, hi: int) -> int:
    """``want`` clamped to ``[lo, hi]``."""
    return max(lo, min(hi, want))


def cooldown_over(now: float, last_change: float, cooldown_s: float) -> bool:
    """Has ``cooldown_s`` passed since the last change?"""
    return now - last_change >= cooldown_s


def apply_delay(
    want: int, state: GuardState, now: float, up_delay_s: float, down_delay_s: float
) -> tuple[int, GuardState]:
    """Hysteresis: grant a change only once it has been wanted for its direction's delay.

    Wanting the current value again resets the pending change; a different target
    in the same direction keeps the clock (the latest target is the one granted).
    """
    if state.value < 0 or want == state.value:
        return (want if state.value < 0 else state.value), replace(
            state, wanted=None, wanted_since=math.inf
        )
    up = want > state.value
    delay = up_delay_s if up else down_delay_s
    if delay <= 0:  # no hysteresis this way: granted, nothing to remember
        return want, replace(state, wanted=None, wanted_since=math.inf)
    same_direction = state.wanted is not None and (state.wanted > state.value) == up
    since = state.wanted_since if same_direction else now
    pending = replace(state, wanted=want, wanted_since=since)
    return (want if now - since >= delay else state.value), pending


def guard(want: int, state: GuardState, now: float, rails: Guardrails) -> tuple[int, GuardState]:
    """Bounds, then hysteresis, then cooldown; returns the value in force and the new state.

    The first decision (``state.value < 0``) takes effect at once.
    """
    bounded = apply_bounds(want, rails.lo, rails.hi)
    value, state = apply_delay(bounded, state, now, rails.up_delay_s, rails.down_delay_s)
    if state.value < 0:
        return value, GuardState(value, now)
    if value == state.value or not cooldown_over(now, state.last_change, rails.cooldown_s):
        return state.value, state
    return value, GuardState(value, now)
