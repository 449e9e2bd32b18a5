"""Vertical surge: instances of a group bound by the cores take the vCPU nothing else holds.

Why: a plan sizes each instance for the planned rates (say 0.7 vCPU), and horizontal
scaling adds whole instances; on a fixed machine the last one that fits leaves a
remainder (two 0.7-vCPU instances on 2 cores leave 0.6 idle) exactly when load is
beyond the plan and every refused request is lost revenue. Dilu's answer is to scale
vertically between an instance's *request* (its planned vCPU) and a higher *limit*;
here the limit is what the instance's runtime threads can use (a thread uses at most
one core) and the extra is only what the machine has free. Only groups that want
more instances than the cores allow (``bound``) surge: at the planned load an
instance runs at its planned size, so cost and latency are what the plan predicted.
When the pressure ends the caller's guardrails bring it back after the scale-down
delay, as for instances.

The free vCPU is counted at the *planned* sizes: a surge never stops another group
from starting an instance (an instance started into the free room ends the surge
that used it at the next decision). Free vCPU is shared by the bound groups in
proportion to the vCPU they hold, filling each up to its threads (water-filling).

Vertical first: a group above its plan's load may grow its instances instead of
starting more of the plan's size (fewer, faster instances do the same CPU-bound work
with shorter batches: two 0.5-vCPU one-thread instances grown to a core each answer a
batch in half the time of four at 0.5). It then *claims* the vCPU those instances would
have held, and claims are served before the water-filling, so growing vertically never
gives a group less than starting instances would have. Pure: a snapshot in,
per-instance vCPU out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EPS = 1e-9


@dataclass(frozen=True)
class SurgeGroup:
    """One group. Invariant: ``planned_vcpu > 0``; ``threads >= 1``; ``instances >= 0``."""

    planned_vcpu: float  # each instance's request (the plan's function size)
    instances: int  # live instances
    threads: int  # runtime threads per instance: the most vCPU one can use
    bound: bool  # wants more instances than the machine's cores allow
    claim_vcpu: float = 0.0  # owed first (all instances): the room of instances not started


def surge_vcpus(groups: Sequence[SurgeGroup], cores: float) -> list[float]:
    """Per-instance vCPU of each group: its plan, plus a share of the free cores if bound."""
    out = [g.planned_vcpu for g in groups]
    free = cores - sum(g.instances * g.planned_vcpu for g in groups)
    # Claims first (vertical growth in place of instances), scaled down together if the
    # free vCPU cannot cover them all.
    claims = [min(g.claim_vcpu, g.instances * (g.threads - g.planned_vcpu))
              if g.instances > 0 and g.claim_vcpu > 0 else 0.0 for g in groups]  # fmt: skip
    owed = sum(claims)
    if owed > EPS and free > EPS:
        part = min(1.0, free / owed)
        for i, g in enumerate(groups):
            out[i] += claims[i] * part / g.instances if claims[i] else 0.0
        free -= owed * part
    # Water-filling: split what is free ∝ held vCPU; a group at its threads' limit
    # keeps that and the rest goes round again among the others.
    open_ = [i for i, g in enumerate(groups)
             if g.bound and g.instances > 0 and g.threads > out[i] + EPS]  # fmt: skip
    while free > EPS and open_:
        held = sum(groups[i].instances * out[i] for i in open_)
        given = 0.0
        still = []
        for i in open_:
            g = groups[i]
            extra = free * out[i] / held  # per instance: its group's share / its instances
            top = min(float(g.threads), out[i] + extra)
            given += (top - out[i]) * g.instances
            out[i] = top
            if top < g.threads - EPS:
                still.append(i)
        free -= given
        if len(still) == len(open_):  # nobody hit a limit: everything was handed out
            break
        open_ = still
    return out


__all__ = ["SurgeGroup", "surge_vcpus"]
