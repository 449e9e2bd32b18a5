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

from collections.abc import Sequence

from batchwise.config.plan import GroupPlan
from batchwise.config.profiles import ModelProfile
from batchwise.perf.functions import function_from_spec
from batchwise.serving import admission
from batchwise.serving.batcher import DispatchSink, GroupBatcher
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


class GroupCore:
    """A group's batcher, calibrated service model, timeouts and admission (no I/O)."""

    def __init__(self, plan: GroupPlan, profile: ModelProfile, overhead_s: float,
                 timer: Timer, dispatch: DispatchSink) -> None:  # fmt: skip
        self.plan = plan
        self.fn = function_from_spec(plan.function)
        self.overhead_s = overhead_s
        self.model = ServiceModel(profile, self.fn, plan.batch_size)
        self.policy = MultiSloBatchPolicy(plan.batch_size, self.live_timeouts())
        self.batcher = GroupBatcher(self.policy, timer, dispatch)
        self.stretch = admission.WaitStretch()  # learned from this group's queued requests
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
        pending = self.batcher.pending
        earliest = min((self.policy.deadline(p) for p in pending), default=None)
        return admission.GroupLoad(now, self.plan.batch_size, len(pending), earliest,
                                   tuple(queued), tuple(free_at))  # fmt: skip

    def admit(self, app: str, items: int, deadline: float, load: admission.GroupLoad
              ) -> admission.Verdict:  # fmt: skip
        """Whether ``items`` of ``app`` arriving at ``load.now`` can be answered by
        ``deadline`` (less the HTTP margin), by the replay with the learned stretch."""
        return admission.decide(load, items, self.policy.timeouts_s.get(app, 0.0),
                                deadline - ADMISSION_MARGIN_S, self.model.avg,
                                self.model.worst, self.stretch.value(load.now))  # fmt: skip

    @staticmethod
    def learnable_wait(verdict: admission.Verdict, slo: float) -> float | None:
        """The predicted wait to learn from once the request's batch reaches an instance
        (None: it did not queue, or too briefly to say anything)."""
        if verdict.queued and verdict.wait_s >= WAIT_MIN_FRACTION * slo:
            return verdict.wait_s
        return None
