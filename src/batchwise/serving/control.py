"""The serving control loop: instances per group every second, the plan every window.

Two time scales, as the issue of reactive autoscaling asks. Within seconds, each
group's instances follow what they did (:func:`~batchwise.scaling.instances.want_instances`
through the shared guardrails: up at once, down only after it has been wanted for
``scale_down_delay_s``, bounded by the cores), so a step in load is absorbed long
before the next re-plan while admission protects the SLOs meanwhile — vertically first
where instances can grow (:mod:`batchwise.scaling.surge`: fewer, larger instances answer
batches faster for the same CPU), then by instances. Every window,
the apps' rates are estimated (:class:`~batchwise.scaling.rates.RateEstimator`,
predictive by default) and the plan is made again; a different plan becomes a new
epoch: its instances start, routing switches once each new group has a warm one,
and the old groups drain. Every decision is recorded with its reason (``/v1/plan``
``history`` and the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from batchwise.config.apps import AppSpec
from batchwise.config.plan import Plan
from batchwise.scaling.guardrails import Guardrails, GuardState, guard
from batchwise.scaling.instances import GroupSignal, want_instances
from batchwise.scaling.rates import RateEstimator
from batchwise.scaling.surge import SurgeGroup, surge_vcpus
from batchwise.serving.server import instance_cores

if TYPE_CHECKING:
    from batchwise.serving.server import GroupRuntime, Server

log = logging.getLogger("batchwise.serving")

SCALE_COOLDOWN_S = 2.0
"""Least time between two changes of a group's instances (a new one must get warm)."""
SURGE_STEP_MILLI = 20
"""A surge is resized only when its vCPU moves by more than this (milli-vCPU)."""
SIGNAL_BATCHES = 4
"""A group's busy time and offered work are read over at least this many of its batch
times (at least one scale interval): a 0.9 s batch ending in a 1 s interval read as 90 %
busy at 27 % utilisation and started instances (seen running this controller in the
simulator on a slow model); for a 30 ms batch it is the interval itself."""
TIMEOUT_TOLERANCE = 0.02
"""Plans whose timeouts differ by less than this fraction are the same plan."""


def _milli(vcpu: float) -> int:
    """Guardrails count whole steps: vCPU in thousandths."""
    return round(vcpu * 1000)


def same_plan(a: Plan, b: Plan) -> bool:
    """Same groups, functions and batch sizes, and timeouts within the tolerance."""
    if len(a.groups) != len(b.groups):
        return False
    for ga, gb in zip(a.groups, b.groups, strict=True):
        if (ga.apps, ga.function, ga.batch_size) != (gb.apps, gb.function, gb.batch_size):
            return False
        for app, t in ga.timeouts.items():
            if abs(gb.timeouts[app] - t) > TIMEOUT_TOLERANCE * max(t, 1e-3):
                return False
    return True


class Controller:
    """The gateway's control loop. Its steps read and drive the server's groups through a
    few attributes only (pools' counts, ``scale_to``, ``resize``; busy time, refusals,
    queue, service model), so the simulator runs the same steps on its simulated groups
    (:mod:`batchwise.sim.autoscale`); ``cores``: what instances fit in (None: this
    machine's, read at each step)."""

    def __init__(self, server: Server, cores: float | None = None) -> None:
        self.server = server
        self.cores = cores
        self.opts = server.options
        self._task: asyncio.Task[None] | None = None
        self._guards: dict[str, GuardState] = {}
        # per group: (time, busy_s, rejected, offered) at recent steps, oldest first
        self._seen: dict[str, deque[tuple[float, float, int, int]]] = {}
        self.rates = RateEstimator(self.opts.rate_estimator)
        self.rates.seed(server.plan.app_rates(), self.opts.rate_floor)
        self._replanning = False
        self._replan_task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._replan_task is not None and not self._replan_task.done():
            self._replan_task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        window = self.opts.replan_window_s
        next_replan = loop.time() + window if window else None
        while not self.server.closing:
            await asyncio.sleep(self.opts.scale_interval_s)
            try:
                if self.opts.autoscale and self.opts.instances is None:
                    self.scale_step(loop.time())
                if next_replan is not None and loop.time() >= next_replan and window:
                    next_replan += window
                    counts = dict(self.server.arrivals)
                    self.server.arrivals.clear()
                    self.rates.observe(counts, window)
                    if self.opts.planner is not None and not self._replanning:
                        self._replan_task = asyncio.ensure_future(self.replan())
            except Exception:  # a control step must never take serving down
                log.exception("control step failed")

    # -- horizontal ---------------------------------------------------------------------
    def _rails(self, g: GroupRuntime) -> Guardrails:
        return Guardrails(1, self.server.max_instances(g), SCALE_COOLDOWN_S, 0.0,
                          self.opts.scale_down_delay_s)  # fmt: skip

    def scale_step(self, now: float) -> None:
        cores = self.cores if self.cores is not None else instance_cores()
        bound: dict[str, bool] = {}
        claims: dict[str, float] = {}
        for g in self.server.groups:
            live, b = g.pool.live_count(), g.plan.batch_size
            seen = self._seen.setdefault(g.name, deque())
            seen.append((now, g.busy_s, g.rejected, g.offered_items))
            span = max(self.opts.scale_interval_s, SIGNAL_BATCHES * g.model.avg(b))
            while len(seen) > 2 and now - seen[1][0] >= span - 1e-9:
                seen.popleft()
            t0, busy0, rej0, off0 = seen[0]
            interval = now - t0 if now > t0 else self.opts.scale_interval_s
            # In instances of the plan's size: a surged one does the work of `k` of them
            # (so the surge's own speed-up does not read as the load going away).
            k = g.model.speedup(b)
            sig = GroupSignal(live, (g.busy_s - busy0) * k, interval,
                              g.queue_depth(), b, g.rejected - rej0, g.offered_items - off0,
                              g.model.avg(b) / b * k)  # fmt: skip
            want = want_instances(sig)
            wanted = want.instances  # in instances of the plan's size
            grow = self._vertical_gain(g, cores)
            vertical = grow > 1.0 + 1e-9 and wanted > live
            if vertical:
                # Vertical first (Dilu): more than the plan's size is wanted, and each
                # instance can grow to its threads: as many as do the work at that size,
                # no more than fit the cores at it (beyond, more instances add no CPU,
                # only slower batches).
                top_v = self._top_vcpu(g, cores)
                others = sum(o.pool.live_count() * o.room_vcpu() for o in self.server.groups
                             if o is not g)  # fmt: skip
                fit = max(1, int((cores - others) // top_v + 1e-9))
                n = min(math.ceil(wanted / grow - 1e-9), fit)
                want = replace(want, instances=max(live, n),
                               reason=f"{want.reason}; {wanted} of the plan's size = {n} "
                               f"at up to {top_v:g} vCPU")  # fmt: skip
            state = self._guards.get(g.name, GuardState(live, now))
            rails = self._rails(g)
            value, state = guard(want.instances, state, now, rails)
            top, room = self._top(g, cores, live)
            if self.opts.backend == "local":  # the cores bound all groups (at planned sizes)
                if value > live:
                    value = max(live, min(value, room))
                    state = GuardState(value, state.last_change if value == live else now)
                if vertical:  # owed the room the instances it did not start would have had
                    horizontal = min(wanted, max(live, room), rails.hi)
                    claims[g.name] = max(0, horizontal - value) * g.room_vcpu()
            self._guards[g.name] = state
            standby = min(self.server.standby_for(g, value), max(0, top - value))
            if value != live or standby != g.pool.standby_target:
                g.pool.scale_to(value, standby)
            if value != live:
                self.server._record("scale", f"group {g.name}: {live} -> {value} instance(s): "
                                    f"{want.reason}")  # fmt: skip
            # Bound: it wants more than the cores hold, or than it has warm while a new
            # one starts (the seconds of a step in load that the warm ones must carry).
            # Or, growing vertically, it wants more than its instances at the plan's size.
            ready, now_live = g.pool.ready_count(), g.pool.live_count()
            bound[g.name] = (want.instances > top
                             or (grow > 1.0 and wanted > now_live)
                             or (want.instances > ready and ready < now_live))  # fmt: skip
        if self.opts.surge and self.opts.backend == "local":
            self.surge_step(now, cores, bound, claims)

    def _top(self, g: GroupRuntime, cores: float, live: int) -> tuple[int, int]:
        """Most instances ``g`` may have now, and the room the cores leave it (local: the
        cores bound all groups at their planned sizes; elsewhere only the rails do)."""
        top = self._rails(g).hi
        if self.opts.backend != "local":
            return top, top
        others = sum(o.pool.live_count() * o.room_vcpu() for o in self.server.groups
                     if o is not g)  # fmt: skip
        room = int((cores - others) // g.room_vcpu() + 1e-9)
        return min(top, max(live, room)), room

    def rescue(self, g: GroupRuntime, now: float) -> bool:
        """A request of ``g`` is about to be refused: promote a warm standby now, if the
        group may grow, rather than at the next step (up to a second later: a burst's
        first second was refused whole while the standby waited). True: promoted."""
        if not self.opts.autoscale or self.opts.instances is not None:
            return False
        if g.pool.standby_ready() == 0:
            return False
        live = g.pool.live_count()
        cores = self.cores if self.cores is not None else instance_cores()
        if live + 1 > self._top(g, cores, live)[0]:
            return False
        g.pool.scale_to(live + 1, self.server.standby_for(g, live + 1))
        self._guards[g.name] = GuardState(live + 1, now)
        self.server._record("scale", f"group {g.name}: {live} -> {live + 1} instance(s): a "
                            "warm standby promoted, a request would have been refused")  # fmt: skip
        return True

    # -- vertical -----------------------------------------------------------------------
    def _top_vcpu(self, g: GroupRuntime, cores: float) -> float:
        return min(float(g.pool.cfg.threads), cores)

    def _vertical_gain(self, g: GroupRuntime, cores: float) -> float:
        """Plan-size instances one instance at its largest surge is worth (1: it cannot
        grow — no surge here, a model flat in vCPUs, or already at its threads)."""
        if not (self.opts.surge and self.opts.backend == "local" and g.pool.resizable()):
            return 1.0
        top = self._top_vcpu(g, cores)
        if top <= g.fn.vcpu + 1e-9:
            return 1.0
        return max(1.0, g.model.gain(top, g.plan.batch_size))

    def surge_step(self, now: float, cores: float, bound: dict[str, bool],
                   claims: dict[str, float] | None = None) -> None:  # fmt: skip
        """Groups that want more instances than the cores allow — or grow vertically
        instead of starting instances (``claims``: the vCPU those would have held) — run
        theirs on the vCPU nothing else holds (:func:`~batchwise.scaling.surge.surge_vcpus`);
        back to the plan once that has not been so for ``scale_down_delay_s``."""
        claims = claims or {}
        groups = [g for g in self.server.groups if g.pool.resizable()]
        specs = [SurgeGroup(g.fn.vcpu, g.pool.live_count(), g.pool.cfg.threads,
                            bound.get(g.name, False), claims.get(g.name, 0.0))
                 for g in groups]  # fmt: skip
        for g, v in zip(groups, surge_vcpus(specs, cores), strict=True):
            key = f"{g.name}/vcpu"
            state = self._guards.get(key, GuardState(_milli(g.live_fn.vcpu), now))
            rails = Guardrails(_milli(g.fn.vcpu), _milli(cores), 0.0, 0.0,
                               self.opts.scale_down_delay_s)  # fmt: skip
            if bound.get(g.name) and _milli(v) < state.value:
                # Still bound, but less is free (another group started an instance):
                # give it back now; only the end of the pressure waits for the delay.
                milli, self._guards[key] = _milli(v), GuardState(_milli(v), now)
            else:
                milli, self._guards[key] = guard(_milli(v), state, now, rails)
            if abs(milli - _milli(g.live_fn.vcpu)) > SURGE_STEP_MILLI:
                before = g.live_fn.vcpu
                g.resize(milli / 1000)
                why = (
                    "wants more instances than the cores hold or are warm"
                    if milli > _milli(g.fn.vcpu)
                    else f"back to the plan's {g.fn.vcpu:g}"
                )
                self.server._record("surge", f"group {g.name}: {before:g} -> {milli / 1000:g} "
                                    f"vCPU per instance: {why}")  # fmt: skip

    # -- re-planning --------------------------------------------------------------------
    async def replan(self) -> None:
        server = self.server
        self._replanning = True
        try:
            rates = self.rates.estimate()
            apps = [AppSpec(name=a, slo=server.slos[a], rate=rates.get(a, self.rates.floor))
                    for a in server.apps]  # fmt: skip
            plan = await asyncio.get_running_loop().run_in_executor(None, self.opts.planner,
                                                                     apps)  # fmt: skip
            shown = ", ".join(f"{a.name} {a.rate:.3g}" for a in apps[:6])
            if same_plan(plan, server.plan):
                server._record("replan", f"kept the plan: rates ({self.opts.rate_estimator}) "
                               f"{shown} req/s")  # fmt: skip
                return
            epoch = server.epoch + 1
            groups = server.build_groups(plan, epoch)
            server._record("replan", f"epoch {epoch}: rates ({self.opts.rate_estimator}) "
                           f"{shown} req/s -> {len(plan.groups)} group(s), predicted cost "
                           f"{plan.expected_cost_per_request:.3g} {plan.currency}/request",
                           )  # fmt: skip
            server._start_groups(groups, "start")
            await asyncio.gather(*(g.pool.wait_ready(1) for g in groups))
            if server.closing:
                await asyncio.gather(*(g.pool.close() for g in groups))
                return
            server.epoch = epoch
            old = server.switch_to(groups, plan)
            self._guards.clear()
            server._record("switch", f"epoch {epoch} serving; draining "
                           f"{', '.join(g.name for g in old)}")  # fmt: skip
            await server.retire(old)
        except Exception as exc:
            server._record("replan", f"failed, kept epoch {server.epoch}: {exc}")
            log.exception("re-planning failed")
        finally:
            self._replanning = False


__all__: list[Any] = ["Controller", "same_plan"]
