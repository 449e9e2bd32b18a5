"""Deadline-aware admission: admit a request only if it can still meet its app's SLO.

Why at enqueue: a request that will miss its SLO anyway only steals capacity from
those that can still make theirs; answering it 503 at once (with ``Retry-After``)
keeps the admitted ones on time under any overload, where a count-based queue
limit (Ray Serve's, Triton's) either sheds too late or too early.

The prediction replays, on the group's current state, what the batcher and the pool
will do. Batches are formed when an instance can take one
(:class:`~batchwise.serving.batcher.GroupBatcher`), so the new request is served after
the buffered requests picked before it (``ahead``: all of them in arrival order) and, in
deadline order, after those *yet to arrive* that will be (``jumpers``: a tighter-SLO
app's requests arriving while it waits overtake it — a loose request admitted on the
queue it sees now would be late). Those go to the instance that frees first in full batches,
queued batches (retries) before them, and each takes the calibrated service time. The
request's last item finishes at ``start + L_max(its batch)``, where a batch that has
not left yet counts as full (arrivals keep joining it until it leaves). Pure: a
snapshot in, a time out.

What the replay cannot know (a slow batch ahead delays every one behind it; the
gateway itself is busy) is a *queueing* error, and it grows with the queue: every batch
ahead adds its own. ``queue_stretch`` (>= 1, learned by the server as a high quantile of
admitted requests' actual over predicted wait for an instance) scales the wait for the
instance that takes the request's batch, never the batcher's timeout, which is exact:
so it can only cost admissions when the request would have queued, and an idle group
always admits. A fixed margin would be too small for a request queued a second and too
large for one queued 50 ms; errors measured here scale with the wait.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

ServiceTime = Callable[[int], float]
"""Seconds a batch of ``b`` items takes on one instance."""


@dataclass(frozen=True)
class GroupLoad:
    """A group's state at ``now``. Invariant: every time is on ``now``'s clock."""

    now: float
    batch_size: int
    buffered: int  # items waiting in the batcher
    earliest_deadline: float | None  # when the batcher must dispatch what it holds
    queued: Sequence[int]  # sizes of dispatched batches waiting for an instance, FIFO
    free_at: Sequence[float]  # per instance (ready or starting): when it can take a batch
    ahead: int | None = None  # buffered items picked before the new one (None: all, FIFO)


@dataclass(frozen=True)
class Verdict:
    admit: bool
    finish_s: float  # predicted completion (absolute), inf if no instance will come
    retry_after_s: float  # 0 when admitted
    queued: bool = False  # the finish depends on when an instance frees (not the timeout)
    wait_s: float = 0.0  # predicted wait (unstretched) for that instance, from now


@dataclass(frozen=True)
class Prediction:
    finish_s: float  # absolute; inf if no instance will come
    queued: bool  # the finish depends on an instance freeing rather than the dispatch
    wait_s: float  # unstretched wait for that instance, from now (0 if free already)
    start_s: float = math.inf  # when its batch starts (absolute)


JUMPER_ROUNDS = 12
"""Rounds of the jumpers' fixed point before assuming every possible one overtakes."""
Jumpers = Callable[[float], float]
"""Expected items that will arrive from now until ``t`` and be picked before the new one."""


def predict(
    load: GroupLoad, items: int, timeout_s: float, avg: ServiceTime, worst: ServiceTime,
    queue_stretch: float = 1.0, jumpers: Jumpers | None = None,
) -> Prediction:  # fmt: skip
    """When the last of ``items`` new items would be answered (see the module's docstring)."""
    p = _replay(load, items, timeout_s, avg, worst, queue_stretch, 0)
    if jumpers is None or not math.isfinite(p.start_s):
        return p
    # Who overtakes it arrives before its batch starts (even a request that would not
    # queue now does, if they fill the instances first); more of them start it later,
    # and later lets more in. Iterated to the fixed point (two rounds under-counted them
    # when they arrive nearly as fast as the instances serve, and admitted loose requests
    # ran late at 3x overload); if it does not settle, all that can overtake it do.
    extra = 0
    for _ in range(JUMPER_ROUNDS):
        more = round(jumpers(p.start_s))
        if more <= extra:
            return p
        extra = more
        p = _replay(load, items, timeout_s, avg, worst, queue_stretch, extra)
    every = jumpers(math.inf)
    if not math.isfinite(every):
        return Prediction(math.inf, True, p.wait_s, math.inf)
    return _replay(load, items, timeout_s, avg, worst, queue_stretch, max(extra, round(every)))


def _replay(load: GroupLoad, items: int, timeout_s: float, avg: ServiceTime,
            worst: ServiceTime, queue_stretch: float, extra: int) -> Prediction:  # fmt: skip
    if not load.free_at:
        return Prediction(math.inf, True, math.inf)
    now, size = load.now, load.batch_size
    free = [max(now, t) for t in load.free_at]
    heapq.heapify(free)
    for b in load.queued:
        t = heapq.heappop(free)
        heapq.heappush(free, t + avg(b))
    ahead = (load.buffered if load.ahead is None else min(load.ahead, load.buffered)) + extra
    buffered = load.buffered + extra  # everything in the batcher once ours is in
    total = ahead + items
    full, last = divmod(total, size)
    if last == 0:
        full, last = full - 1, size
    _run_full(free, full, avg(size))
    batch = min(size, buffered + items - full * size)  # ours, with less urgent ones filling it
    dispatch = now + timeout_s
    if load.earliest_deadline is not None and batch > min(items, last):
        # Buffered items share our batch: it leaves at their deadline, if sooner.
        dispatch = min(dispatch, max(now, load.earliest_deadline))
    if batch == size:
        dispatch = now
    wait = heapq.heappop(free) - now
    free_t = now + wait * max(1.0, queue_stretch)
    queued = wait > 0 and free_t > dispatch
    start = max(dispatch, free_t)
    # A batch that does not leave now keeps taking arrivals until it is full or times
    # out: it may run as a full batch, so that is what it is charged (as planned).
    ran = batch if dispatch <= now else size
    return Prediction(start + worst(ran), queued, wait, start)


def _run_full(free: list[float], n: int, each_s: float) -> None:
    """``n`` batches of ``each_s`` on the instances of heap ``free`` (each to the first
    free). Why not one by one: under overload a replay counts hundreds of batches ahead
    for every arrival, on the gateway's loop; once the free times lie within one batch of
    each other the instances take turns, so whole rounds are one addition each."""
    k = len(free)
    while n > 0:
        if n >= 2 * k and max(free) - free[0] <= each_s:
            rounds = n // k
            free[:] = [t + rounds * each_s for t in free]  # order (the heap) is unchanged
            n -= rounds * k
            continue
        heapq.heapreplace(free, free[0] + each_s)
        n -= 1


def decide(load: GroupLoad, items: int, timeout_s: float, deadline: float, avg: ServiceTime,
           worst: ServiceTime, queue_stretch: float = 1.0, jumpers: Jumpers | None = None
           ) -> Verdict:  # fmt: skip
    """Admit iff the predicted finish is no later than ``deadline`` or nothing queues."""
    p = predict(load, items, timeout_s, avg, worst, queue_stretch)
    if jumpers is not None and (p.finish_s <= deadline or not p.queued):
        p = predict(load, items, timeout_s, avg, worst, queue_stretch, jumpers)
    if p.finish_s <= deadline or not p.queued:
        # Not queued: an instance is free by the time the batch leaves, so the batcher's
        # timeout (fitted to the SLO) decides; refusing would not help anyone, and an idle
        # group that refused would never learn that service got faster again.
        return Verdict(True, p.finish_s, 0.0, p.queued, p.wait_s)
    late = p.finish_s - deadline if math.isfinite(p.finish_s) else 1.0
    return Verdict(False, p.finish_s, max(1.0, math.ceil(late)), p.queued, p.wait_s)


@dataclass
class WaitStretch:
    """How much longer than replayed queued requests really wait for an instance.

    A high quantile of actual ÷ predicted waits of the queued requests admitted in the
    last ``memory_s`` (``learn``), decaying towards 1 without new evidence (load changes,
    and so does the error: one bad second must not shut admission for good), and ``cold``
    until ``min_samples`` are in: a load that arrives as a step queues a full SLO on the
    replay's word before any answer can correct it, and that first second is when waits
    run longest (instances starting, the gateway busiest) — seen at 3x overload, where
    every late request was in the first 10 s. Pure: times come in as arguments.

    Why a memory in seconds, not a count: on a shared machine service slows by half for a
    second or two every few seconds. Under overload ~200 queued requests are admitted per
    second, so the last 512 of them covered 2.5 s: the quantile forgot each slow spell
    within seconds, fell to ~1.1 during the next fast one, and admitted queues of 0.68 s
    that the next slow spell made late (97 late answers in one second of a 3x-overload run,
    per-batch log). Ten seconds hold the spells that recur. Under sustained overload a
    higher stretch costs no goodput — the instances stay busy, the admitted queue is only
    shorter — and without queueing there are no samples, so it still decays to 1.
    """

    # 99.5 %, not 99: under overload nearly every admitted request is admitted just
    # inside its deadline, so the quantile is close to the share that makes it (3× the
    # plan's capacity, 4 paired runs each: median 99.99 % on time vs 99.70 %).
    quantile: float = 0.995
    memory_s: float = 10.0
    window: int = 4096  # at most this many samples, however recent
    min_samples: int = 32
    every: int = 16  # recompute the quantile every this many samples
    cold: float = 1.5
    most: float = 3.0
    half_life_s: float = 2.0
    _ratios: deque[float] = field(default_factory=deque, repr=False)
    _times: deque[float] = field(default_factory=deque, repr=False)
    _value: float = 1.0
    _at: float = 0.0
    _seen: int = 0
    _warm: bool = False  # min_samples learned (ever): never cold again

    def learn(self, now: float, predicted_wait: float, actual_wait: float) -> None:
        if predicted_wait <= 0:
            return
        self._ratios.append(actual_wait / predicted_wait)
        self._times.append(now)
        while len(self._ratios) > self.window or self._times[0] < now - self.memory_s:
            self._ratios.popleft()
            self._times.popleft()
        self._at, self._seen = now, self._seen + 1
        self._warm = self._warm or self._seen >= self.min_samples
        if self._warm and self._seen % self.every == 0:  # over what the memory holds
            q = float(np.quantile(self._ratios, self.quantile))
            self._value = min(self.most, max(1.0, q))

    def value(self, now: float) -> float:
        if not self._warm:
            return self.cold
        decay = 0.5 ** (max(0.0, now - self._at) / self.half_life_s)
        return 1.0 + (self._value - 1.0) * decay


ACTIVE_COUNT = 0.5
"""An app is *active* while its decayed arrival count is at least this: one request
within the last ``tau_s · ln 2`` (1.4 s), or a few spread over longer."""


@dataclass
class ArrivalRate:
    """Items per second offered by each app lately: a count decaying with ``tau_s``.

    What the replay needs to expect its jumpers: a few seconds' memory, so that a step in
    load shows within a second or two and one burst is forgotten as fast. Refused
    requests count: they were offered, and the next ones like them will be too. Pure:
    times come in as arguments."""

    tau_s: float = 2.0
    _count: dict[str, float] = field(default_factory=dict)
    _at: dict[str, float] = field(default_factory=dict)

    def add(self, app: str, now: float, items: int = 1) -> None:
        self._count[app] = self._decayed(app, now) + items
        self._at[app] = now

    def rate(self, app: str, now: float) -> float:
        return self._decayed(app, now) / self.tau_s

    def apps(self) -> list[str]:
        return list(self._count)

    def active(self, now: float, min_count: float = ACTIVE_COUNT) -> list[str]:
        """The apps that offered anything lately (their decayed count >= ``min_count``)."""
        return [a for a in self._count if self._decayed(a, now) >= min_count]

    def _decayed(self, app: str, now: float) -> float:
        c = self._count.get(app, 0.0)
        return c * math.exp(-max(0.0, now - self._at.get(app, now)) / self.tau_s) if c else 0.0
