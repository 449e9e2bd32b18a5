"""Apps files: which model, which price book, and each app's SLO and request rate.

Example::

    model: VGG19              # a model in the profile set
    profiles: harmonybatch    # optional: built-in set name or a file path
    prices: alibaba-fc-2023   # optional: built-in price book name or a file path
    apps:
      - {name: app1, slo: 0.5, rate: 5}   # slo in seconds, rate in requests/s
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from batchwise.config.loader import read_document, validate
from batchwise.config.prices import PriceBook, load_prices
from batchwise.config.profiles import ModelProfile, get_profile, load_profiles
from batchwise.errors import ConfigError

T = TypeVar("T")


class AppSpec(BaseModel):
    """One inference app: a latency SLO and a mean request rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="unique app name")
    slo: float = Field(gt=0, description="latency SLO (seconds, end to end incl. batching wait)")
    rate: float = Field(gt=0, description="mean request arrival rate (requests/s)")


class AppsFile(BaseModel):
    """The on-disk apps file."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="model name in the profile set")
    profiles: str | None = Field(
        None, description="built-in profile set or file (default: built-in)"
    )
    prices: str | None = Field(
        None, description="built-in price book or file (default: alibaba-fc-2023)"
    )
    apps: list[AppSpec] = Field(min_length=1)

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


def _resolve(ref: str | None, base: Path) -> str | None:
    """Resolve a relative file reference against the apps file's folder."""
    if ref is None:
        return None
    candidate = base / ref
    return str(candidate) if candidate.exists() else ref


def _within(
    path: Path, lines: dict, field: str, load: Callable[[str | None], T], ref: str | None
) -> T:
    """Run ``load(ref)``; prefix any error with the apps file, line and field that named it."""
    try:
        return load(ref)
    except ConfigError as exc:
        line = lines.get((field,))
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"{where}: {exc}") from None


def load_workload(path: str | Path) -> Workload:
    """Load an apps file and the profile and price book it names."""
    p = Path(path)
    data, lines = read_document(p)
    if data is None:
        raise ConfigError(f"{p}: file is empty")
    spec = validate(AppsFile, data, str(p), lines)
    profiles_ref = _resolve(spec.profiles, p.parent)
    profiles = _within(p, lines, "profiles", load_profiles, profiles_ref)
    line = lines.get(("model",))
    where = f"{p}:{line}: model" if line else f"{p}: model"
    profile = get_profile(profiles, spec.model, where)
    prices_ref = _resolve(spec.prices, p.parent)
    prices = _within(p, lines, "prices", load_prices, prices_ref)
    return Workload(tuple(spec.apps), profile, prices, profiles_ref, prices_ref or prices.name)
