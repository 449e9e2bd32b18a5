"""A batch after an idle spell runs slower than one back to back: the rule, pure.

Why: the profiler times batches back to back, but at light load a serving instance
waits between batches, and its next batch is slower — the runtime's worker threads
have gone to sleep and must be woken, the caches and the vCPU (a VM's, descheduled
by the host while idle) are cold. Measured here through the serving path (MiniLM,
gaps before each batch, medians of 20): one thread +8–15 % after 25 ms or more of
idleness, nothing below 10 ms; two threads +20–50 % at batch 1 and +10–20 % at batch 8.
A simulator charging the back-to-back time under-predicted the cost of a served plan
at low load by up to 28 %. ``batchwise profile`` measures the slowdown per thread count
and batch size (batches each after :data:`PROBE_GAP_S` of sleep, on instances whose
quota covers their threads, so no CFS refill is mixed in); the simulator's
finite-instance pools multiply a batch's work by it when the instance was idle for at
least the profile's ``after_s`` before the batch.
"""

from __future__ import annotations

import numpy as np

from batchwise.config.profiles import IdlePoint, IdleSlowdown

IDLE_AFTER_S = 0.025
"""Idle time from which a batch runs cold: no slowdown was measurable below 10 ms, most
of it from 25 ms on (a quarter of a CFS period)."""
PROBE_GAP_S = 0.2
"""Sleep before each of the profiler's idle batches: well past :data:`IDLE_AFTER_S`,
like the gaps of a lightly loaded instance (tens to hundreds of ms)."""


def idle_factor(spec: IdleSlowdown | None, threads: int, batch: int, idle_s: float) -> float:
    """What a batch of ``batch`` on ``threads`` threads takes, as a multiple of its
    back-to-back time, after ``idle_s`` of idleness (1 below the spec's ``after_s``)."""
    if spec is None or idle_s < spec.after_s:
        return 1.0
    have = sorted({p.threads for p in spec.points})
    t = min(have, key=lambda h: (abs(h - threads), h))
    pts = sorted((p.batch, p.factor) for p in spec.points if p.threads == t)
    return float(np.interp(batch, [b for b, _ in pts], [f for _, f in pts]))


def fit_idle(pairs: dict[int, dict[int, list[tuple[float, float]]]],
             after_s: float = IDLE_AFTER_S) -> IdleSlowdown | None:  # fmt: skip
    """From (after an idle sleep, right after it) batch times per thread count and batch
    size: each cell's median ratio, at least 1 (noise cannot make an idle batch faster);
    None without a measured pair.

    Pairs, and medians: the machine drifts by as much as the effect between two series
    measured apart (one profile said 1.2 for one thread, the next, minutes later, 1.0), and
    one batch that met a busy neighbour moves a mean; a pair shares the moment's speed."""
    points = []
    for t, cells in sorted(pairs.items()):
        for b, xs in sorted(cells.items()):
            ratios = [cold / warm for cold, warm in xs if warm > 0]
            if ratios:
                f = min(10.0, max(1.0, float(np.median(ratios))))
                points.append(IdlePoint(threads=t, batch=b, factor=round(f, 4)))
    return IdleSlowdown(after_s=after_s, points=points) if points else None
