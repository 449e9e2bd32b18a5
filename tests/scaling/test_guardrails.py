"""Guardrails stepped on a fake clock: bounds, hysteresis, cooldown and their composition."""

from __future__ import annotations

import pytest

from batchwise.scaling.guardrails import (
    Guardrails,
    GuardState,
    apply_bounds,
    apply_delay,
    cooldown_over,
    guard,
)


def run(rails: Guardrails, wants: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """Feed (now, want) in order; return (now, value in force) after each decision."""
    state, log = GuardState(), []
    for now, want in wants:
        value, state = guard(want, state, now, rails)
        log.append((now, value))
    return log


def test_bounds_and_cooldown_predicates():
    assert apply_bounds(9, 1, 4) == 4 and apply_bounds(0, 1, 4) == 1 and apply_bounds(2, 1, 4) == 2
    assert cooldown_over(5.0, 0.0, 5.0) and not cooldown_over(4.9, 0.0, 5.0)


def test_first_decision_takes_effect_at_once_within_bounds():
    assert run(Guardrails(1, 4, cooldown_s=10), [(0.0, 9)]) == [(0.0, 4)]


def test_cooldown_holds_changes_until_it_is_over():
    log = run(Guardrails(0, 10, cooldown_s=5), [(0, 2), (1, 5), (4.9, 6), (5.0, 6), (6, 1)])
    assert log == [(0, 2), (1, 2), (4.9, 2), (5.0, 6), (6, 6)]


def test_hysteresis_needs_a_change_to_persist_for_its_direction():
    rails = Guardrails(0, 10, up_delay_s=2.0, down_delay_s=10.0)
    log = run(rails, [(0, 3), (1, 5), (2, 3), (3, 5), (4.9, 6), (5.0, 6), (6, 1), (15, 1), (16, 1)])
    # Up: wanted at 1, dropped at 2 (back to 3), wanted again from 3: granted at 5.0.
    # Down: wanted from 6, granted after 10 s, at 16.
    assert log == [(0, 3), (1, 3), (2, 3), (3, 3), (4.9, 3), (5.0, 6), (6, 6), (15, 6), (16, 1)]


def test_a_flip_of_direction_restarts_the_delay():
    state = GuardState(value=4, last_change=0.0)
    _, state = apply_delay(6, state, 1.0, up_delay_s=3.0, down_delay_s=3.0)
    _, state = apply_delay(2, state, 2.0, up_delay_s=3.0, down_delay_s=3.0)
    assert state.wanted == 2 and state.wanted_since == 2.0
    value, _ = apply_delay(2, state, 4.9, up_delay_s=3.0, down_delay_s=3.0)
    assert value == 4


@pytest.mark.parametrize("kw", [{"lo": 3, "hi": 2}, {"lo": 0, "hi": 1, "cooldown_s": -1}])
def test_invalid_guardrails(kw):
    with pytest.raises(ValueError):
        Guardrails(**kw)
