"""Latency models of HarmonyBatch (seconds), vectorised over function sizes.

CPU, per batch size b: ``L(b, c) = alpha_b exp(-c / beta_b) + gamma_b`` (own triple for
avg and max); where the profile keeps its measured allotments, a thread-aware rule over
them instead (:func:`measured_latency`).
GPU with m of M GB, time slice tau, ``L0(b) = xi1 b + xi2``:
``L_avg = (M/m) a L0 + h L0 / min(v, 1)`` and
``L_max = (ceil(a L0 / (m tau)) (M - m) tau + a L0) * k + h L0 / min(v, 1)``
where a / h are the GPU / host shares, v the host vCPUs and k the overhead factor
(1 when m = M). GPU-SM with share s (spatial sharing, no time slices):
``L_avg = a L0 max(1, sigma(b) / s) + h L0 / min(v, 1)``, ``sigma(b) = min(1, sigma1 b^g)``
(the SMs a batch keeps busy), and ``L_max`` the GPU part × k when s < 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from batchwise.config.profiles import CpuProfile, GpuProfile
from batchwise.perf.functions import Function


def _exp(params: tuple[float, float, float], c: ArrayLike) -> np.ndarray:
    alpha, beta, gamma = params
    return alpha * np.exp(-np.asarray(c, dtype=float) / beta) + gamma


def cpu_avg(cpu: CpuProfile, batch: int, vcpu: ArrayLike) -> np.ndarray:
    """The exponential fit's L_avg (what a profile without measured allotments has)."""
    return _exp(cpu.avg[batch - 1], vcpu)


def cpu_max(cpu: CpuProfile, batch: int, vcpu: ArrayLike) -> np.ndarray:
    return _exp(cpu.max[batch - 1], vcpu)


def unthrottled(cpu: CpuProfile, threads: int, batch: int) -> tuple[float, float] | None:
    """(avg, max) of a batch's work at full speed on ``threads`` threads, from the profile's
    measured allotment whose quota covered that many threads (interpolated over batch
    sizes, the last measured beyond); None when none was measured.

    Why not the fit at ``threads`` vCPU: one exponential over the allotments bends
    through the fractional ones, whose threads share a quota, and missed the whole-vCPU
    cells by up to 25 % (MiniLM here, 1 vCPU, batch 8: fit 58 ms, measured 47 ms); the
    simulator's work at full speed then made every batch that much dearer than live."""
    for curve in cpu.measured or ():
        if curve.threads == threads and curve.unthrottled:
            avg = float(np.interp(batch, curve.batch, curve.avg_s))
            return avg, max(avg, float(np.interp(batch, curve.batch, curve.max_s)))
    return None


def measured_latency(cpu: CpuProfile, vcpu: float, batch: ArrayLike,
                     which: str) -> np.ndarray | None:  # fmt: skip
    """Back-to-back latency (``which``: ``"avg_s"`` or ``"max_s"``) of batches of ``batch``
    on a ``vcpu`` instance, from the profile's measured allotments run with the threads
    such an instance runs (:func:`~batchwise.perf.cfs.instance_threads`); None when the
    profile measured none with that many threads (the caller falls back to the fit).

    The rule, per thread count t: a quota at or above t buys nothing more (t threads use
    at most t cores: 1.2 vCPU on one thread is 1.0's latency); between two measured
    allotments latency is linear in 1/vCPU (a throttled instance's time is its work ×
    t / quota); below the smallest (or above the largest throttled one, where none covers
    t) it scales with t / quota from the nearest one.

    Why not the exponential through every allotment: it ignores that the allotments
    run different thread counts. On this machine (MiniLM, 2026-12-02) 1.5 vCPU on two
    threads was no faster than 1.0 on one (batch 8: 43.0 vs 43.7 ms) — the two threads
    share 150 ms of quota per 100 ms period — while the fit said 34 ms there and 58 ms
    at 1.0 (measured 44), so plans at 1.1–1.5 vCPU looked cheaper than they were and
    plans went from one group to two between two profiles of the same hour."""
    from batchwise.perf.cfs import instance_threads  # cfs is a leaf; keep the import local

    t = instance_threads(vcpu)
    cells: dict[float, Any] = {}
    for curve in cpu.measured or ():
        if curve.threads == t:
            cells[min(curve.vcpu, float(t))] = curve
    if not cells:
        return None
    b = np.asarray(batch, dtype=float)
    vs = sorted(cells)
    ys = [np.interp(b, cells[v].batch, getattr(cells[v], which)) for v in vs]
    v = min(float(vcpu), float(t))
    if v <= vs[0]:
        return ys[0] * (vs[0] / v)
    if v >= vs[-1]:
        return ys[-1] * (vs[-1] / v)  # vs[-1] == t == v when the top one is unthrottled
    i = int(np.searchsorted(vs, v)) - 1
    w = (1 / v - 1 / vs[i]) / (1 / vs[i + 1] - 1 / vs[i])
    return ys[i] + w * (ys[i + 1] - ys[i])


def gpu_full(gpu: GpuProfile, batch: ArrayLike) -> np.ndarray:
    """L0(b): latency with the whole GPU."""
    return gpu.per_item_s * np.asarray(batch, dtype=float) + gpu.base_s


SM_SATURATION = 0.18
"""Default sigma1: the SM share a batch of one keeps busy (``bench/sm_saturation.py``, fitted
over the five Dilu grids together; per model 0.10–0.34)."""
SM_SATURATION_GROWTH = 0.32
"""Default g in sigma(b) = min(1, sigma1 b^g) (the same fit; per model 0.10–0.46)."""


def sm_saturation(gpu: GpuProfile, batch: ArrayLike) -> np.ndarray:
    """sigma(b): the share of the SMs a batch of ``batch`` keeps busy."""
    s1 = SM_SATURATION if gpu.sm_saturation is None else gpu.sm_saturation
    g = SM_SATURATION_GROWTH if gpu.sm_saturation_growth is None else gpu.sm_saturation_growth
    return np.minimum(1.0, s1 * np.asarray(batch, dtype=float) ** g)


def gpu_sm_device(gpu: GpuProfile, batch: ArrayLike, share: float) -> np.ndarray:
    """The GPU part of a batch at SM share ``share``: full speed until the share is below
    what the batch keeps busy, then slower in proportion."""
    l0 = gpu_full(gpu, batch)
    return gpu.gpu_share * l0 * np.maximum(1.0, sm_saturation(gpu, batch) / share)


def gpu_sm_avg(gpu: GpuProfile, batch: ArrayLike, share: float, vcpu: ArrayLike) -> np.ndarray:
    return gpu_sm_device(gpu, batch, share) + _host_part(gpu, gpu_full(gpu, batch), vcpu)


def gpu_sm_max(gpu: GpuProfile, batch: ArrayLike, share: float, vcpu: ArrayLike) -> np.ndarray:
    k = gpu.max_latency_overhead if share < 1.0 else 1.0
    return gpu_sm_device(gpu, batch, share) * k + _host_part(gpu, gpu_full(gpu, batch), vcpu)


def _host_part(gpu: GpuProfile, l0: np.ndarray, vcpu: ArrayLike) -> np.ndarray:
    return gpu.host_share * l0 / np.minimum(np.asarray(vcpu, dtype=float), 1.0)


def gpu_avg(gpu: GpuProfile, batch: ArrayLike, mem_gb: ArrayLike, vcpu: ArrayLike) -> np.ndarray:
    l0 = gpu_full(gpu, batch)
    m = np.asarray(mem_gb, dtype=float)
    return gpu.total_memory_gb / m * gpu.gpu_share * l0 + _host_part(gpu, l0, vcpu)


def gpu_max(gpu: GpuProfile, batch: ArrayLike, mem_gb: ArrayLike, vcpu: ArrayLike) -> np.ndarray:
    l0 = gpu_full(gpu, batch)
    m = np.asarray(mem_gb, dtype=float)
    dev = gpu.gpu_share * l0
    slices = np.ceil(dev / (m * gpu.slice_s) - 1e-12)
    overhead = np.where(m < gpu.total_memory_gb, gpu.max_latency_overhead, 1.0)
    wait = slices * (gpu.total_memory_gb - m) * gpu.slice_s
    return (wait + dev) * overhead + _host_part(gpu, l0, vcpu)


class LatencyModel:
    """Average and maximum latency of a batch on a function, for one model.

    The formulas per kind are :mod:`batchwise.perf.kinds`' entries; this class holds the
    model's profile parts and dispatches on ``fn.kind``.
    """

    def __init__(self, cpu: CpuProfile | None, gpu: GpuProfile | None) -> None:
        from batchwise.perf.kinds import KINDS  # kinds builds on this module's formulas

        self.cpu = cpu
        self.gpu = gpu
        self._parts = {"cpu": cpu, "gpu": gpu, "gpu-sm": gpu}
        self._kinds = KINDS

    def _of(self, fn: Function) -> tuple[Any, Any]:
        part = self._parts.get(fn.kind)
        assert part is not None, f"no {fn.kind} profile for this model"
        return self._kinds[fn.kind], part

    def avg(self, fn: Function, batch: int) -> float:
        kind, part = self._of(fn)
        return kind.avg(part, fn, batch)

    def avg_upto(self, fn: Function, batch: int) -> np.ndarray:
        """L_avg of batches of 1..batch (entry n-1), in one vectorised step."""
        kind, part = self._of(fn)
        return kind.avg_upto(part, fn, batch)

    def max(self, fn: Function, batch: int) -> float:
        kind, part = self._of(fn)
        return kind.max(part, fn, batch)
