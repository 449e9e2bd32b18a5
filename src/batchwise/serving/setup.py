"""From an apps file to a servable plan: runner, profile (measured on first use), prices, plan.

``batchwise serve APPS.yaml`` needs nothing else for a built-in model: the profile
comes from ``--profile``, the apps file's ``profiles``, or this machine's cache, and
failing those it is measured now (:mod:`batchwise.profiling.cpu`, about a minute for
MiniLM) and cached under ``$BATCHWISE_CACHE/profiles`` keyed by model, options, CPU
and cores, so the next start is immediate. Prices default to the ``local`` book
(this machine, sold by the vCPU). A plan that needs more than this machine has (a GPU,
more vCPUs per instance than cores) is refused with the reason, or re-planned on
CPUs only when asked (``--cpu-only``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batchwise import __version__
from batchwise.config.apps import AppsFile, resolve_ref
from batchwise.config.loader import STDIN, load_document, validate
from batchwise.config.plan import Plan
from batchwise.config.prices import BUILTIN_PRICE_BOOKS, PriceBook, load_prices
from batchwise.config.profiles import (
    BUILTIN_PROFILE_SET,
    ModelProfile,
    get_profile,
    load_profiles,
)
from batchwise.errors import ConfigError
from batchwise.perf.kinds import KINDS
from batchwise.planner import plan as make_plan
from batchwise.profiling.cpu import ProfileResult, default_vcpus, profile_model, profile_yaml
from batchwise.runtime.runners import BUILTINS
from batchwise.serving.server import RunnerRef

SERVE_PRICE_BOOK = "local"
"""Price book of a served plan unless the apps file names one."""


@dataclass(frozen=True)
class Prepared:
    plan: Plan
    profile: ModelProfile
    prices: PriceBook
    runner: RunnerRef
    profile_source: str  # where the profile came from: a file, "cache:PATH" or "measured:PATH"
    algorithm: str = "dp"  # the planner used (and to re-plan with)

    def replanner(self) -> Callable[[list], Plan]:
        """Plans for new rates with the same profile, prices and planner (re-planning)."""

        def replan(apps: list) -> Plan:
            p = make_plan(apps, self.profile, self.prices, self.algorithm)
            p.profiles = self.plan.profiles
            return p

        return replan


def cache_dir() -> Path:
    return Path(os.environ.get("BATCHWISE_CACHE") or Path.home() / ".cache" / "batchwise")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def profile_cache_path(runner: RunnerRef) -> Path:
    """Where this machine's profile of ``runner`` is cached (key: model, options, CPU, cores,
    and the allotments profiled: a new default grid measures again)."""
    key = json.dumps({"model": runner.model, "options": runner.options, "cpu": _cpu_model(),
                      "cores": os.cpu_count(), "version": __version__,
                      "vcpus": default_vcpus()},
                     sort_keys=True, default=str)  # fmt: skip
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() else "_" for ch in runner.model.lower())[-40:]
    return cache_dir() / "profiles" / f"{safe}-{digest}.yaml"


def _runner(spec: AppsFile, base: Path) -> RunnerRef | None:
    if spec.runner is not None:
        return RunnerRef(spec.runner.model, dict(spec.runner.options), str(base))
    if spec.model.lower() in BUILTINS:
        return RunnerRef(spec.model.lower(), {}, str(base))
    return None


def _profile(spec: AppsFile, source: str, lines, base: Path, runner: RunnerRef,
             profile_file: str | None,
             progress: Callable[[str], None] | None) -> tuple[ModelProfile, str]:  # fmt: skip
    if profile_file is not None:
        path = str(Path(profile_file).expanduser().resolve())
        return get_profile(load_profiles(path), spec.model, path), path
    if spec.profiles is not None:
        ref = resolve_ref(spec.profiles, base, [BUILTIN_PROFILE_SET], "profile set")
        return get_profile(load_profiles(ref), spec.model, source, lines.get(("model",))), str(ref)
    cached = profile_cache_path(runner)
    if cached.is_file():
        try:
            return get_profile(load_profiles(cached), spec.model), f"cache:{cached}"
        except ConfigError:
            pass  # a stale or broken cache entry: measure again
    if progress:
        progress(f"profiling {runner.model} on this machine (first use; cached in {cached})")
    result = profile_model(runner.model, runner.options, runner.base, name=spec.model,
                           progress=_ticker(progress))  # fmt: skip
    _write_cache(cached, result)
    return result.profile, f"measured:{cached}"


def _ticker(progress: Callable[[str], None] | None) -> Callable[[str, int, int], None] | None:
    if progress is None:
        return None
    last = [-1]

    def tick(what: str, done: int, total: int) -> None:
        pct = done * 100 // total
        if pct // 10 != last[0]:
            last[0] = pct // 10
            progress(f"profiling: {pct}% ({what})")

    return tick


def _write_cache(path: Path, result: ProfileResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(profile_yaml(result))
    os.replace(tmp, path)


def check_fits(plan: Plan, cores: int | None = None) -> None:
    """Refuse a plan this machine cannot run, naming the group and the reason."""
    n = cores or os.cpu_count() or 1
    for i, g in enumerate(plan.groups):
        if KINDS[g.function.kind].device == "gpu":
            raise ConfigError(f"the plan puts group {i} ({', '.join(g.apps[:5])}) on a GPU "
                              "function, and this machine has no GPU; pass --cpu-only to "
                              "re-plan on CPUs")  # fmt: skip
        if g.function.vcpu > n:
            raise ConfigError(
                f"group {i} needs {g.function.vcpu:g} vCPU per instance; this machine has "
                f"{n} cores (use a price book with vcpu_max <= {n})"
            )


def prepare(apps_path: str, profile_file: str | None = None, algorithm: str = "dp",
            cpu_only: bool = False,
            progress: Callable[[str], None] | None = None) -> Prepared:  # fmt: skip
    """Everything ``serve`` needs from an apps file (errors name the file and field)."""
    data, lines, source = load_document(apps_path)
    spec = validate(AppsFile, data, source, lines)
    base = Path.cwd() if str(apps_path) == STDIN else Path(apps_path).resolve().parent
    runner = _runner(spec, base)
    if runner is None:
        raise ConfigError(f"{source}: model {spec.model!r} is not a built-in runner "
                          f"({', '.join(BUILTINS)}); name what to run under 'runner' "
                          "(model: NAME|FILE.onnx|module:Class) and give its profile "
                          "(--profile or 'profiles')", field="runner")  # fmt: skip
    profile, where = _profile(spec, source, lines, base, runner, profile_file, progress)
    prices_ref = resolve_ref(spec.prices or SERVE_PRICE_BOOK, base, BUILTIN_PRICE_BOOKS,
                             "price book")  # fmt: skip
    prices = load_prices(prices_ref)
    algo = "cpu-only" if cpu_only or profile.gpu is None else algorithm
    plan = make_plan(list(spec.apps), profile, prices, algo)
    plan.profiles = where.split(":", 1)[-1]
    check_fits(plan)
    return Prepared(plan, profile, prices, runner, where, algo)
