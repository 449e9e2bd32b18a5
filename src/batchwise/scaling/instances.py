"""How many instances a group wants, from what its instances did in the last interval.

Why utilisation first: a group whose instances were busy ``u`` of the time needs
``busy / target`` of them to run at the target utilisation — that is the whole
capacity question when nothing queues. Why also the offered work: busy time
saturates at 100 % of the instances there are, so at saturation the ratio alone asks
for only ``1 / target`` times more (+1 per step for one or two instances, ten seconds
to absorb a 6x step). Every item that arrived — admitted or refused — would take
``item_s`` of an instance at a full batch, so ``offered × item_s / interval / target``
instances serve it at the target: a step in load is answered in one decision (once
the instances are at least half as busy as targeted: below, one interval's arrivals are
noise). It is a
lower bound (batches that time out are smaller, slower per item), hence the ``max``
with utilisation. And a queue longer than one batch per instance, or refusals by
admission, while the instances are at least half as busy as targeted, say demand is
beyond capacity: the group asks for at least one more. Guardrails
(bounds, hysteresis, cooldown) are applied by the caller
(:func:`batchwise.scaling.guardrails.guard`), as for every other scaler.
Pure: a snapshot in, a number out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

TARGET_UTILISATION = 0.7
"""Busy fraction instances are sized for (headroom for bursts and batching waits)."""


def instances_needed(rate: float, expected_batch: float, batch_s: Callable[[int], float],
                     target: float = TARGET_UTILISATION) -> int:  # fmt: skip
    """Instances that keep ``rate`` requests/s in batches of ``expected_batch`` (each
    taking ``batch_s(b)``) busy ``target`` of the time: a group's start (at least 1)."""
    b = max(1.0, expected_batch)
    busy = rate / b * batch_s(round(b))
    return max(1, math.ceil(busy / target))


@dataclass(frozen=True)
class GroupSignal:
    """One interval of a group. Invariant: ``interval_s > 0``; counts are of that interval."""

    instances: int  # live instances (ready or starting)
    busy_s: float  # instance-seconds spent on batches in the interval
    interval_s: float
    queued_items: int  # items waiting (buffered or for an instance) at its end
    batch_size: int
    rejected: int  # requests refused by admission in the interval
    offered_items: int = 0  # items that arrived in the interval, admitted or refused
    item_s: float = 0.0  # one instance's service time per item at a full batch (s)


@dataclass(frozen=True)
class Want:
    instances: int
    reason: str


def want_instances(sig: GroupSignal, target: float = TARGET_UTILISATION) -> Want:
    """Instances the group should have, and why (for the scaling history)."""
    n = max(1, sig.instances)
    util = sig.busy_s / (sig.interval_s * n)
    want = max(1, math.ceil(sig.busy_s / sig.interval_s / target - 1e-9))
    why = f"busy {util:.0%} of {n} instance(s) (target {target:.0%})"
    # Refusals at low utilisation are not a capacity problem (a tight SLO against a slow
    # batch): more instances would only cost their start-up CPU.
    busy_enough = util >= target / 2
    capacity_short = sig.rejected > 0 and busy_enough
    offered = sig.offered_items * sig.item_s / sig.interval_s  # instance-seconds per second
    by_offer = math.ceil(offered / target - 1e-9)
    # Only when the instances are at least half as busy as targeted: one second's
    # arrivals of a slow model are noise (3 Poisson arrivals of a 0.9 s model in one
    # second asked 4 instances for a load that keeps one 27 % busy, seen by running this
    # controller in the simulator), while a step in load saturates them within a second.
    if by_offer > want and busy_enough and (capacity_short or sig.rejected == 0):
        want = by_offer  # refused work, never served, is missing from busy time
        why += f"; offered {sig.offered_items / sig.interval_s:.0f} items/s needs {by_offer}"
    backlog = sig.queued_items > sig.batch_size * n and busy_enough  # else a burst's noise
    if backlog or capacity_short:
        want = max(want, n + 1)
        why += (f"; {sig.rejected} refused" if sig.rejected else "") + (
            f"; {sig.queued_items} items queued" if backlog else ""
        )
    return Want(want, why)
