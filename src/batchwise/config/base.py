"""The base of every config schema: strict, finite, closed.

Why: every file kind (apps, profiles, price books, plans, jobs) is edited by hand,
and pydantic's lax defaults turn typos into wrong numbers without a word — ``slo:
true`` becomes 1.0 s, ``"0.5"`` a float, ``.inf`` a rate the planner then fails on
with an unrelated message. One base class makes the whole family strict (no bool or
string coercion into numbers), finite (no NaN/inf anywhere) and closed (unknown keys
are errors), so a new schema cannot forget any of it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _list_to_tuple(value: Any) -> Any:
    """YAML/JSON have no tuples; strict mode would refuse a list for a tuple field."""
    return tuple(value) if isinstance(value, list) else value


class StrictModel(BaseModel):
    """Frozen, strict, finite, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class StrictMutableModel(BaseModel):
    """As :class:`StrictModel` but mutable (plans get their references filled in)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def tuple_of(tp: Any) -> Any:
    """``tuple[...]`` that accepts a YAML/JSON list under strict validation."""
    return Annotated[tp, BeforeValidator(_list_to_tuple)]
