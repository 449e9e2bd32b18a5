"""What one group decides, for the gateway and the finite-instance simulator alike.

Why shared: a simulation that predicts a live run must make the live run's decisions,
not a model of them. Around the :class:`GroupBatcher` (one buffer loop), a group
calibrates its service model from the batches it serves, re-fits its batching timeouts
to that calibration every few batches, admits a request only if the replay of its queue
says it can meet its deadline, and learns how far that replay under-predicts waits.
:class:`GroupCore` is all of that with the clock injected; the gateway's
:class:`~batchwise.serving.server.GroupRuntime` adds instances, HTTP calls and billing,
the simulator's :class:`~batchwise.sim.serving.GroupServer` adds drawn service times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from batchwise.config.plan import GroupPlan
from batchwise.config.profiles import ModelProfile
from batchwise.perf.functions import function_from_spec
from batchwise.serving import admission
from batchwise.serving.batcher import ARRIVAL, DispatchSink, Gate, GroupBatcher
from batchwise.serving.batching import MultiSloBatchPolicy
from batchwise.serving.deadlines import live_timeouts
from batchwise.serving.service_model import ServiceModel
from batchwise.serving.timer import Timer

ADMISSION_MARGIN_S = 0.005
"""Slack kept for the HTTP layer (parsing, encoding) when admitting against an SLO."""
WAIT_MIN_FRACTION = 0.1
"""Waits predicted under this fraction of the request's SLO are not learned from: their
ratios are noise (a 5 ms wait that took 20 ms says little about a 1 s queue)."""
RETIME_EVERY = 8
"""Batches between re-fits of the timeouts to the calibrated service model."""
FIRST_COME, EVEN = "first-come", "even"
SHARES = (FIRST_COME, EVEN)
"""How an overloaded group's capacity is shared among its apps (``serve --overload-share``).

``first-come``: a request is admitted whenever it can meet its own SLO, so in arrival
order the queue grows to the loosest app's SLO and a tight app's requests, arriving
behind it, are refused (at 3x overload: the 1.0 s app 58 % admitted, the 0.2 s app 0.3 %).
``even``: a request is also held to the tightest SLO among the group's active apps, so
the queue stays short enough for every app and each is admitted about as often as it
offers; nothing changes while the group keeps up, but a loose app's bursts that it
could have waited out are refused once they queue longer than the tight app's SLO."""


class GroupCore:
    """A group's batcher, calibrated service model, timeouts and admission (no I/O)."""

    def __init__(self, plan: GroupPlan, profile: ModelProfile, overhead_s: float, timer: Timer,
                 dispatch: DispatchSink, gate: Gate | None = None,
                 order: str = ARRIVAL, share: str = FIRST_COME) -> None:  # fmt: skip
        if share not in SHARES:
            raise ValueError(f"share must be one of {SHARES}, got {share!r}")
        self.plan = plan
        self.share = share
        self.fn = function_from_spec(plan.function)
        self.live_fn = self.fn  # what its instances run as now: the plan's, or a surge
        self.overhead_s = overhead_s
        self.model = ServiceModel(profile, self.fn, plan.batch_size)
        self.policy = MultiSloBatchPolicy(plan.batch_size, self.live_timeouts())
        self.batcher = GroupBatcher(self.policy, timer, dispatch, gate, order)
        # In deadline order, per app: earliest deadline first makes the replay's error an
        # app's own (a tight app's wait is the running batch and few ahead; a loose one's
        # depends on who overtakes it), and one group-wide quantile, set by the loose
        # app's spread, refused the tight app's requests (82 % admitted at a quarter of
        # the capacity). In arrival order every app waits in the same FIFO, so the error
        # is the group's: learned per app, an app admitted only now and then (tagging
        # behind digest at 3x overload) saw its own stretch decay to 1 between its rare
        # samples, and 15 % of its admitted requests ran late.
        self.stretches: dict[str, admission.WaitStretch] = {}
        self._per_app_stretch = self.batcher.by_deadline
        self.arrivals = admission.ArrivalRate()  # offered items per app (for jumpers)
        self.batches = 0

    def live_timeouts(self) -> dict[str, float]:
        """The plan's timeouts fitted to today's calibrated worst full batch and the
        request's overhead outside batching (:func:`batchwise.serving.deadlines.live_timeouts`)."""
        return live_timeouts(self.plan.timeouts, self.plan.slos,
                             self.model.worst(self.plan.batch_size), self.overhead_s)  # fmt: skip

    def retime(self) -> None:
        timeouts = self.live_timeouts()
        if any(abs(timeouts[a] - t) > 0.001 for a, t in self.policy.timeouts_s.items()):
            self.policy = MultiSloBatchPolicy(self.plan.batch_size, timeouts)
            self.batcher.set_policy(self.policy)

    def resize_model(self, vcpu: float) -> None:
        """The instances now run at ``vcpu`` (a vertical surge, or back to the plan): the
        service model (hence admission) and the timeouts follow; billing reads ``live_fn``."""
        self.live_fn = replace(self.fn, vcpu=round(vcpu, 4))
        self.model.resize(self.live_fn)
        self.retime()

    def served(self, items: int, busy_s: float) -> None:
        """A batch of ``items`` took ``busy_s`` on an instance: calibrate (and re-time)."""
        self.batches += 1
        self.model.observe(items, busy_s)
        if self.batches % RETIME_EVERY == 0:
            self.retime()

    # -- admission ----------------------------------------------------------------------
    def snapshot(self, now: float, queued: Sequence[int], free_at: Sequence[float]
             ) -> admission.GroupLoad:  # fmt: skip
        """The replay's snapshot: the batcher's buffer, plus the pool's queued batch sizes
        (FIFO) and each instance's predicted free time."""
        return admission.GroupLoad(now, self.plan.batch_size, len(self.batcher),
                                   self.batcher.earliest_deadline(), tuple(queued),
                                   tuple(free_at))  # fmt: skip

    def admit(self, app: str, items: int, deadline: float, load: admission.GroupLoad
              ) -> admission.Verdict:  # fmt: skip
        """Whether ``items`` of ``app`` arriving at ``load.now`` can be answered by
        ``deadline`` (less the HTTP margin), by the replay with the learned stretch:
        after the buffered requests at least as urgent, and the ones expected to arrive
        meanwhile that will be (in deadline order: other apps' tighter requests)."""
        now = load.now
        self.arrivals.add(app, now, items)
        if self.share == EVEN:  # no later than the tightest active app's SLO from now
            tightest = min((self.plan.slos[a] for a in self.arrivals.active(now)
                            if a in self.plan.slos), default=math.inf)  # fmt: skip
            deadline = min(deadline, now + tightest)
        urgency = self.batcher.urgency(app, now)
        load = replace(load, ahead=self.batcher.ahead_of(urgency))
        return admission.decide(load, items, self.policy.timeouts_s.get(app, 0.0),
                                deadline - ADMISSION_MARGIN_S, self.model.avg,
                                self.model.worst, self._stretch(app).value(now),
                                self._jumpers(app, now, urgency))  # fmt: skip

    def _jumpers(self, app: str, now: float, urgency: float) -> admission.Jumpers | None:
        """Expected items of other apps arriving before ``t`` that overtake ``app``'s
        request: one of app ``a`` arriving at ``s`` is as urgent as ``s + offset_a``."""
        windows = []
        for other in self.arrivals.apps():
            if other == app:
                continue  # the same app's later requests are less urgent
            until = urgency - self.batcher.offset(other)  # none in arrival order
            rate = self.arrivals.rate(other, now)
            if until > now and rate > 0:
                windows.append((until, rate))
        if not windows:
            return None
        return lambda t: sum(r * max(0.0, min(t, u) - now) for u, r in windows)

    def _stretch(self, app: str) -> admission.WaitStretch:
        key = app if self._per_app_stretch else ""  # "": the group's, shared by its apps
        st = self.stretches.get(key)
        if st is None:
            st = self.stretches[key] = admission.WaitStretch()
        return st

    def learn_wait(self, app: str, now: float, predicted_s: float, actual_s: float) -> None:
        """An admitted queued request of ``app`` reached an instance after ``actual_s``
        where the replay said ``predicted_s``."""
        self._stretch(app).learn(now, predicted_s, max(0.0, actual_s))

    def queue_stretch(self, now: float) -> float:
        """The group's learned stretch, or the largest of its apps' in deadline order
        (1: none learned yet)."""
        return max((st.value(now) for st in self.stretches.values()), default=1.0)

    @staticmethod
    def learnable_wait(verdict: admission.Verdict, slo: float) -> float | None:
        """The predicted wait to learn from once the request's batch reaches an instance
        (None: it did not queue, or too briefly to say anything)."""
        if verdict.queued and verdict.wait_s >= WAIT_MIN_FRACTION * slo:
            return verdict.wait_s
        return None
