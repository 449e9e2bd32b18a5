"""The timeouts a group batches with when it serves for real (gateway and simulator alike).

Why a module of its own: the plan lets a lone request wait its whole slack at the
profile's latency, but a live request also spends time in HTTP and IPC outside the
batcher, and its batch may run slower or faster than profiled. The gateway therefore
batches with shorter timeouts than the plan's; a simulation that predicts a live run
(the finite-instance mode) must batch with the very same ones, or it predicts another
system. One function, used by :class:`batchwise.serving.server.GroupRuntime` and by
:class:`batchwise.sim.serving.GroupServer`.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_OVERHEAD_S = 0.015
"""Time a live request spends outside batching (HTTP parse and answer, IPC), seconds:
what the gateway keeps out of its batching timeouts, and what the finite-instance
simulation adds to every request by default."""


def live_timeouts(timeouts: Mapping[str, float], slos: Mapping[str, float], worst_s: float,
                  overhead_s: float) -> dict[str, float]:  # fmt: skip
    """Per app: the plan's timeout, no longer than its SLO leaves after a worst full batch
    (``worst_s``), less ``overhead_s``; never below zero.

    A timeout that fits these figures keeps a request that found its instance idle on
    time, so admission never has to refuse one.
    """
    return {a: max(0.0, min(t, slos[a] - worst_s) - overhead_s) for a, t in timeouts.items()}
