"""``batchwise profile``: measure a model's CPU latency under vCPU quotas and fit its profile.

Why through the serving instances: each allotment runs in a real function instance
(:class:`~batchwise.serving.pool.GroupPool`: its own process, its own cgroup quota,
warm before measuring), and a batch's time is measured where the gateway measures
it (send to reply), so the profile predicts what serving will observe, IPC included.

Only some batch sizes are measured (default 1, 2, 4, 8, 16, 32); latency is
interpolated linearly in the batch size between them at each allotment, then each
batch size 1..B gets its exponential ``L(c) = alpha exp(-c / beta) + gamma`` fitted
over the allotments (three or more), as :mod:`batchwise.perf.fit` does for the paper's
profiles: the mean of each cell for "avg", its 99th percentile for "max". The fit
error is reported per measured point.

Every allotment's cells are also kept as measured (``measured``, with the threads it
ran): planners take latency from them by a thread-aware rule
(:func:`~batchwise.perf.latency.measured_latency`) and the simulator its work at full
speed from the whole-vCPU ones — one exponential through all allotments misses those by
up to 25 %, as it cannot know that 1.5 vCPU runs two threads on a shared quota. On the
whole-vCPU allotments (whose quota covers their
runtime threads: 1 and 2 on two cores) every batch size is timed again in
:data:`IDLE_REPEATS` pairs: a batch after :data:`~batchwise.perf.idle.PROBE_GAP_S` of
sleep, then one back to back (pairs: the machine's drift between two separate series was
as large as the effect); their ratios make the profile's ``idle_slowdown``
(:mod:`batchwise.perf.idle`), which the simulator charges a batch that follows an idle
spell. Those allotments only: below its
threads a quota refills while idle and the two effects would mix.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from batchwise import aio
from batchwise.config.profiles import CpuProfile, MeasuredCurve, ModelProfile
from batchwise.errors import ConfigError
from batchwise.perf.cfs import instance_threads
from batchwise.perf.fit import MAX_QUANTILE, fit_exponential
from batchwise.perf.idle import PROBE_GAP_S, fit_idle
from batchwise.runtime.registry import construct
from batchwise.runtime.samples import sample_records
from batchwise.serving.instance import InstanceConfig
from batchwise.serving.pool import Batch, GroupPool

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
DEFAULT_REPEATS = 7
MIN_VCPU = 0.1
MIN_FIT_VCPUS = 3
"""Allotments the exponential fit needs (alpha, beta, gamma)."""
IDLE_REPEATS = 5
"""(idle, back-to-back) pairs per batch size on whole-vCPU allotments."""
MIN_CELL_S = 0.5
"""Batch time each cell is timed for at least (more batches than ``repeats`` where these
are short): five CFS periods.

Why: under a quota below its threads a batch's time depends on where in the 100 ms
period it starts, so a cell of 7 batches of 8 ms (56 ms, inside one period) measured
either the quota's full speed or its throttled rate. Four profiles of one hour put
MiniLM at 0.5 vCPU, batch 1, at 8.5 / 13.9 / 11.0 / 16.6 ms, and at 1.5 vCPU, batch 8, at
23.6 … 38.7 ms; the planner picked 0.5, 1.0 or 1.5 vCPU from them."""
MAX_CELL_REPEATS = 400
"""At most this many batches per cell, whatever ``min_cell_s`` asks."""
IMPLAUSIBLE_RATIO = 1.5
"""An allotment whose batches run this much slower than with less CPU was measured under
contention: it is measured again, then left out of the fit if it still is."""
Progress = Callable[[str, int, int], None]
"""``(what, done, total)``: called after every measured batch."""


def default_vcpus(cores: int | None = None) -> tuple[float, ...]:
    """Five allotments up to the machine's cores: 0.5, 0.75, 1, 1.5, 2 on two cores.

    Why 0.75: below one core a one-thread instance is throttled about in proportion to
    its quota, and plans land there (0.6–0.9 vCPU); with only 0.5 and 1 measured, the
    exponential fit put 0.7 vCPU within 6 % of 1 vCPU (MiniLM batch 4: 34.7 vs 32.8 ms)
    where instances ran 36 % slower live, so plans were too cheap on paper and the
    simulator under-predicted the cost of a served plan by 27 %."""
    n = cores or os.cpu_count() or 1
    return tuple(round(n * f / 8, 2) for f in (2, 3, 4, 6, 8))


@dataclass(frozen=True)
class Point:
    """One measured cell and the fitted model's figures there."""

    batch: int
    vcpu: float
    samples: int
    mean_s: float
    p99_s: float
    fit_avg_s: float = 0.0
    fit_max_s: float = 0.0

    @property
    def avg_error(self) -> float:
        return self.fit_avg_s / self.mean_s - 1 if self.mean_s > 0 else 0.0

    @property
    def max_error(self) -> float:
        return self.fit_max_s / self.p99_s - 1 if self.p99_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(avg_error=round(self.avg_error, 4), max_error=round(self.max_error, 4))
        return d


@dataclass
class ProfileResult:
    name: str
    profile: ModelProfile
    points: list[Point]
    mechanism: str  # what enforced the allotments: cgroup-v1, cgroup-v2, duty-cycle, off
    seconds: float
    memory_base_mb: float
    options: dict[str, Any] = field(default_factory=dict)
    dropped_vcpus: list[float] = field(default_factory=list)  # implausible twice: not fitted

    def to_dict(self) -> dict[str, Any]:
        errs = [abs(p.avg_error) for p in self.points]
        return {
            "model": self.name,
            "options": self.options,
            "cpu_quota": self.mechanism,
            "seconds": round(self.seconds, 2),
            "memory_base_mb": round(self.memory_base_mb, 1),
            "batch_sizes": sorted({p.batch for p in self.points}),
            "vcpus": sorted({p.vcpu for p in self.points}),
            "fit_error_mean": round(float(np.mean(errs)), 4) if errs else None,
            "fit_error_max": round(float(np.max(errs)), 4) if errs else None,
            "dropped_vcpus": self.dropped_vcpus,
            "idle_slowdown": [p.model_dump() for p in self.profile.cpu.idle_slowdown.points]
            if self.profile.cpu is not None and self.profile.cpu.idle_slowdown
            else [],
            "points": [p.to_dict() for p in self.points],
            "profile": self.profile.model_dump(mode="json"),
        }


def check_grid(batch_sizes: Sequence[int], vcpus: Sequence[float], repeats: int) -> None:
    """Refuse a grid the fit cannot use, before any instance starts."""
    if not batch_sizes or min(batch_sizes) != 1:
        raise ConfigError("--batch-sizes must include 1 (the profile covers 1..max)",
                          field="--batch-sizes")  # fmt: skip
    if max(batch_sizes) > 1024 or len(set(batch_sizes)) != len(batch_sizes):
        raise ConfigError("--batch-sizes must be distinct and at most 1024", field="--batch-sizes")
    cores = os.cpu_count() or 1
    if len(set(vcpus)) < MIN_FIT_VCPUS:
        raise ConfigError("--vcpus needs at least 3 distinct allotments (alpha, beta, gamma)",
                          field="--vcpus")  # fmt: skip
    bad = [c for c in vcpus if not MIN_VCPU <= c <= cores]
    if bad:
        raise ConfigError(f"--vcpus {bad[0]:g} is outside {MIN_VCPU}..{cores} (this machine's "
                          "cores)", field="--vcpus")  # fmt: skip
    if not 2 <= repeats <= 1000:
        raise ConfigError("--repeats must be in 2..1000", field="--repeats")


class _Item:
    __slots__ = ("record",)

    def __init__(self, record: Any) -> None:
        self.record = record


Cells = dict[int, list[float]]
Pairs = dict[int, list[tuple[float, float]]]  # per batch size: (after idling, right after)


def probes_idle(vcpu: float) -> bool:
    """Whether an allotment's idle batches are timed: its quota covers its threads."""
    return vcpu >= instance_threads(vcpu)


async def measure_allotment(
    model: str, options: dict[str, Any], base: str, vcpu: float, batch_sizes: Sequence[int],
    repeats: int, records: list[Any], tick: Callable[[], None], idle_repeats: int = 0,
    min_cell_s: float = MIN_CELL_S,
) -> tuple[Cells, Pairs, str, float]:  # fmt: skip
    """Latencies per batch size on one warm instance with ``vcpu``, back to back (at least
    ``repeats`` and ``min_cell_s`` of batch time each), and ``idle_repeats`` (after an idle
    sleep, right after it) pairs; its quota and RSS (MB)."""
    threads = instance_threads(vcpu)
    cfg = InstanceConfig(model, options, base, vcpu=vcpu, threads=threads,
                         warmup_batch=max(batch_sizes))  # fmt: skip
    loop = asyncio.get_running_loop()
    lost: list[Batch] = []
    with tempfile.TemporaryDirectory(prefix="batchwise-profile-") as sock_dir:
        pool = GroupPool(f"profile-{vcpu:g}", cfg, sock_dir, lost.append,
                         lambda b: time.monotonic(), time.monotonic)  # fmt: skip
        pool.scale_to(1)
        try:
            await pool.wait_ready(1)
            mechanism = next(iter(pool.members.values())).quota.mechanism
            rss = _rss_mb(pool.pids())
            out: Cells = {}
            idle: Pairs = {}

            async def one(r: int, b: int, count: bool = True) -> float:
                start = (r * b) % max(1, len(records) - b)
                fut = loop.create_future()
                pool.submit(Batch(r, [_Item(x) for x in records[start : start + b]], fut))
                _, busy = await fut
                if count:  # progress counts the planned batches; extra ones fill a cell
                    tick()
                return busy

            for b in batch_sizes:
                out[b] = [await one(r, b) for r in range(repeats)]
                while sum(out[b]) < min_cell_s and len(out[b]) < MAX_CELL_REPEATS:
                    out[b].append(await one(len(out[b]), b, count=False))
            for b in batch_sizes if idle_repeats else ():
                idle[b] = []
                for r in range(idle_repeats):
                    await asyncio.sleep(PROBE_GAP_S)
                    cold = await one(r, b)
                    idle[b].append((cold, await one(r + 1, b)))
            if lost:
                raise RuntimeError(f"the instance died while profiling at {vcpu:g} vCPU")
            return out, idle, mechanism, rss
        finally:
            await pool.close()


def _rss_mb(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss / 2**20
        except psutil.Error:
            continue
    return total


def implausible_allotments(cells: dict[float, dict[int, list[float]]],
                           ratio: float = IMPLAUSIBLE_RATIO) -> list[float]:  # fmt: skip
    """Allotments measured slower than a smaller one, by more than ``ratio``, at most of
    their batch sizes.

    Why: more CPU never makes a batch slower, so such an allotment was measured while
    something else had the cores (seen here: at 2.0 vCPU on a 2-core machine with another
    process busy, MiniLM's threads waited on each other and batches took 10–30x longer,
    and the exponential fit through that point was off by hundreds of percent everywhere).
    """
    vcpus = sorted(cells)
    bad = []
    for i, c in enumerate(vcpus[1:], start=1):
        sizes = list(cells[c])
        slower = sum(np.mean(cells[c][b]) > ratio * min(np.mean(cells[s][b]) for s in vcpus[:i])
                     for b in sizes)  # fmt: skip
        if slower * 2 > len(sizes):
            bad.append(c)
    return bad


def fit(cells: dict[float, dict[int, list[float]]]) -> tuple[CpuProfile, list[Point]]:
    """Interpolate over batch sizes, fit an exponential over allotments per batch size."""
    vcpus = np.array(sorted(cells))
    measured = sorted(next(iter(cells.values())))
    top = max(measured)
    means = np.array([[np.mean(cells[c][b]) for b in measured] for c in vcpus])
    highs = np.array([[np.quantile(cells[c][b], MAX_QUANTILE) for b in measured] for c in vcpus])
    avg, worst = [], []
    for b in range(1, top + 1):
        m = np.array([np.interp(b, measured, means[i]) for i in range(len(vcpus))])
        h = np.array([np.interp(b, measured, highs[i]) for i in range(len(vcpus))])
        a = fit_exponential(vcpus, m)
        w = fit_exponential(vcpus, np.maximum(h, m))
        avg.append(a)
        worst.append(w)
    profile = CpuProfile(avg=avg, max=worst, memory_base_mb=0.0,
                         vcpu_range=(float(vcpus.min()), float(vcpus.max())))  # fmt: skip
    points = []
    for i, c in enumerate(vcpus):
        for j, b in enumerate(measured):
            fa = _exp(avg[b - 1], c)
            fm = _exp(worst[b - 1], c)
            points.append(Point(b, float(c), len(cells[c][b]), float(means[i, j]),
                                float(highs[i, j]), fa, fm))  # fmt: skip
    return profile, points


def _exp(p: tuple[float, float, float], c: float) -> float:
    return float(p[0] * np.exp(-c / p[1]) + p[2])


def profile_model(
    model: str, options: dict[str, Any] | None = None, base: str = ".",
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, vcpus: Sequence[float] | None = None,
    repeats: int = DEFAULT_REPEATS, name: str | None = None, progress: Progress | None = None,
    min_cell_s: float = MIN_CELL_S,
) -> ProfileResult:  # fmt: skip
    """Measure ``model`` over ``batch_sizes`` × ``vcpus`` and fit its CPU profile."""
    opts = dict(options or {})
    vc = tuple(vcpus or default_vcpus())
    sizes = tuple(sorted(batch_sizes))
    check_grid(sizes, vc, repeats)
    if not 0 <= min_cell_s <= 60:
        raise ConfigError("--min-cell-seconds must be in 0..60", field="--min-cell-seconds")
    runner = construct(model, opts, base, "model")  # options are checked before any start
    inputs = getattr(runner, "inputs", ()) or ()
    if not inputs:
        raise ConfigError(f"model {model!r} declares no inputs: cannot make sample records")
    records = sample_records(inputs, max(256, 2 * max(sizes)), seed=0)
    idle_reps = {c: IDLE_REPEATS if probes_idle(c) else 0 for c in vc}
    total = sum(len(sizes) * (repeats + 2 * idle_reps[c]) for c in vc)
    done = [0]
    t0 = time.monotonic()
    Grid = dict[float, Cells]

    async def run() -> tuple[Grid, dict[float, Pairs], str, float]:
        cells: Grid = {}
        idle: dict[float, Pairs] = {}
        mech, rss = "", 0.0
        for c in vc:

            def tick(c: float = c) -> None:
                done[0] += 1
                if progress:
                    progress(f"{c:g} vCPU", done[0], total)

            cells[c], idle[c], mech, r = await measure_allotment(
                model, opts, base, c, sizes, repeats, records, tick, idle_reps[c], min_cell_s
            )
            rss = max(rss, r)
        for c in implausible_allotments(cells):  # once more, now the machine may be quiet
            if progress:
                progress(f"{c:g} vCPU again (slower than less CPU)", done[0], total)
            cells[c], idle[c], _, _ = await measure_allotment(
                model,
                opts,
                base,
                c,
                sizes,
                repeats,
                records,
                lambda: None,
                idle_reps[c],
                min_cell_s,
            )
        return cells, idle, mech, rss

    cells, idle, mechanism, rss = aio.run(run())
    dropped = implausible_allotments(cells)
    if len(cells) - len(dropped) >= MIN_FIT_VCPUS:
        for c in dropped:
            del cells[c]
    else:
        dropped = []
    cpu, points = fit(cells)
    whole = {c for c in cells if idle.get(c)}  # fitted whole-vCPU allotments
    slowdown = fit_idle({instance_threads(c): idle[c] for c in whole})
    curves = [MeasuredCurve(vcpu=c, threads=instance_threads(c), batch=list(sizes),
                            avg_s=[float(np.mean(cells[c][b])) for b in sizes],
                            max_s=[float(np.quantile(cells[c][b], MAX_QUANTILE)) for b in sizes])
              for c in sorted(cells)]  # fmt: skip
    cpu = cpu.model_copy(update={"memory_base_mb": round(rss, 1), "idle_slowdown": slowdown,
                                 "measured": curves or None})  # fmt: skip
    label = name or model
    return ProfileResult(label, ModelProfile(name=label, cpu=cpu), points, mechanism,
                         time.monotonic() - t0, rss, opts, dropped)  # fmt: skip


def profile_yaml(result: ProfileResult) -> str:
    """A profile file (``models: {NAME: {cpu: …}}``) with the measured points as comments."""
    import yaml

    head = [f"# batchwise profile of {result.name} on this machine ({os.cpu_count()} cores), "
            f"vCPU quota by {result.mechanism}, {result.seconds:.0f} s",
            "# planners take latency from 'measured' below (thread-aware); the fit (avg, max)",
            "# only for thread counts not measured. Fit errors at the measured points:",
            "# batch  vcpu   mean_s    p99_s  fit_avg_err  fit_max_err"]  # fmt: skip
    if result.dropped_vcpus:
        head.insert(1, "# not fitted (measured twice slower than less CPU: contention?): "
                    + ", ".join(f"{c:g} vCPU" for c in result.dropped_vcpus))  # fmt: skip
    for p in result.points:
        head.append(f"# {p.batch:5d} {p.vcpu:5.2f} {p.mean_s:8.4f} {p.p99_s:8.4f} "
                    f"{p.avg_error:+11.1%} {p.max_error:+11.1%}")  # fmt: skip
    slow = result.profile.cpu.idle_slowdown if result.profile.cpu is not None else None
    if slow is not None:
        head.append(f"# after {slow.after_s * 1e3:g} ms idle (slept {PROBE_GAP_S * 1e3:g} ms "
                    "before each, paired with one right after): threads batch factor")  # fmt: skip
        head += [f"# {p.threads:7d} {p.batch:5d} {p.factor:6.3f}" for p in slow.points]
    body = {"models": {result.name: {"cpu": result.profile.cpu.model_dump(mode="json")}}}
    return "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False)
