"""Apps files: which model, which price book, and each app's SLO and request rate.

Example::

    model: VGG19              # a model in the profile set
    profiles: harmonybatch    # optional: built-in set name or a file path
    prices: alibaba-fc-2023   # optional: built-in price book name or a file path
    apps:
      - {name: app1, slo: 0.5, rate: 5}   # slo in seconds, rate in requests/s
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, field_validator

from batchwise.config.base import StrictModel
from batchwise.config.limits import MAX_APPS, MAX_RATE, MAX_SLO_S
from batchwise.config.loader import STDIN, LineMap, load_document, validate
from batchwise.config.prices import BUILTIN_PRICE_BOOKS, PriceBook, load_prices
from batchwise.config.profiles import (
    BUILTIN_PROFILE_SET,
    ModelProfile,
    get_profile,
    load_profiles,
)
from batchwise.errors import ConfigError

T = TypeVar("T")


APP_NAME_MAX = 200
"""Longest app name (characters)."""


class AppSpec(StrictModel):
    """One inference app: a latency SLO and a mean request rate."""

    name: str = Field(min_length=1, max_length=APP_NAME_MAX, description="unique app name")
    slo: float = Field(
        gt=0, le=MAX_SLO_S, description="latency SLO (seconds, end to end incl. batching wait)"
    )
    rate: float = Field(gt=0, le=MAX_RATE, description="mean request arrival rate (requests/s)")


class RunnerSpec(StrictModel):
    """What serving instances run: a built-in runner, an ``.onnx`` file or ``module:Class``."""

    model: str = Field(min_length=1, max_length=1000,
                       description="built-in name, path to .onnx, or module:Class")  # fmt: skip
    options: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments for its constructor"
    )


class AppsFile(StrictModel):
    """The on-disk apps file."""

    model: str = Field(min_length=1, description="model name in the profile set")
    runner: RunnerSpec | None = Field(
        None, description="what `serve` runs (default: the built-in runner named by `model`)"
    )
    profiles: str | None = Field(
        None, description="built-in profile set or file (default: built-in)"
    )
    prices: str | None = Field(
        None, description="built-in price book or file (default: alibaba-fc-2023)"
    )
    apps: list[AppSpec] = Field(min_length=1, max_length=MAX_APPS)

    @field_validator("apps")
    @classmethod
    def _unique_names(cls, apps: list[AppSpec]) -> list[AppSpec]:
        seen: set[str] = set()
        for app in apps:
            if app.name in seen:
                raise ValueError(f"app name {app.name!r} appears more than once")
            seen.add(app.name)
        return apps


@dataclass(frozen=True)
class Workload:
    """A resolved apps file: the apps plus the profile and price book they refer to."""

    apps: tuple[AppSpec, ...]
    profile: ModelProfile
    prices: PriceBook
    profiles_ref: str | None = None  # how the profile set was named (for plans)
    prices_ref: str = "alibaba-fc-2023"  # how the price book was named (for plans)


def resolve_ref(ref: str | None, base: Path, builtins: Iterable[str], what: str) -> str | None:
    """A built-in name as it is; a file path resolved against ``base``, made absolute.

    Why absolute: the reference is copied into plans, which are read from other
    folders; a path relative to wherever the planner happened to run breaks there.
    """
    if ref is None or ref in builtins:
        return ref
    path = (base / Path(ref).expanduser()).resolve()
    if not path.is_file():
        raise ConfigError(
            f"{ref!r} is neither a built-in {what} ({', '.join(builtins)}) "
            f"nor an existing file (looked for {path})"
        )
    return str(path)


def _within(
    source: str, lines: LineMap, field: str, load: Callable[[str | None], T], ref: str | None
) -> T:
    """Run ``load(ref)``; prefix any error with the file, line and field that named it."""
    try:
        return load(ref)
    except ConfigError as exc:
        line = lines.get((field,))
        raise exc.within(f"{source}:{line}: {field}" if line else f"{source}: {field}") from None


def load_workload(path: str | Path) -> Workload:
    """Load an apps file (``-``: stdin) and the profile and price book it names."""
    data, lines, source = load_document(path)
    spec = validate(AppsFile, data, source, lines)
    base = Path.cwd() if str(path) == STDIN else Path(path).parent
    profiles_ref = _within(
        source, lines, "profiles",
        lambda r: resolve_ref(r, base, [BUILTIN_PROFILE_SET], "profile set"),
        spec.profiles,
    )  # fmt: skip
    profiles = _within(source, lines, "profiles", load_profiles, profiles_ref)
    profile = get_profile(profiles, spec.model, source, lines.get(("model",)))
    prices_ref = _within(
        source, lines, "prices",
        lambda r: resolve_ref(r, base, BUILTIN_PRICE_BOOKS, "price book"),
        spec.prices,
    )  # fmt: skip
    prices = _within(source, lines, "prices", load_prices, prices_ref)
    return Workload(tuple(spec.apps), profile, prices, profiles_ref, prices_ref or prices.name)
