"""The live control loop on the simulation clock: the shipped ``Controller``, not a model of it.

Why: above the plan's load a live gateway grows its instances vertically (to their
threads) and starts more (up to what the cores hold), and a simulation that kept the
plan's instances at the plan's size predicted half the capacity live had (at 10x the
planned rates it admitted 58 % where live admitted 93 %). So the finite-instance mode,
with ``PoolSpec.autoscale``, runs :meth:`batchwise.serving.control.Controller.scale_step`
every ``scale_interval_s`` of virtual time on views of the simulated groups that answer
what it reads of a live group (its busy time, refusals, offered items, queue, service
model, instances) and do what it asks (start or drain instances after their cold
start, resize every instance's CFS quota). The decisions, their guardrails and the
vertical-first surge are the live code's; only the instances are simulated. Re-planning
every window stays the simulator's own (``simulate --replan``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchwise.config.plan import Plan
from batchwise.perf.cfs import instance_room

if TYPE_CHECKING:
    from batchwise.sim.core import Environment
    from batchwise.sim.serving import GroupServer


@dataclass(frozen=True)
class _Cfg:
    threads: int


class SimPoolView:
    """A simulated group's instances as the controller sees a live ``GroupPool``."""

    def __init__(self, server: GroupServer, env: Environment) -> None:
        assert server.pool is not None
        self._server, self._pool, self._env = server, server.pool, env
        self.cfg = _Cfg(self._pool.threads)
        self.target = self._pool.live_count()

    @property
    def standby_target(self) -> int:
        return self._pool.standby_target

    def live_count(self) -> int:
        return self._pool.live_count()

    def ready_count(self) -> int:
        return self._pool.ready_count(self._env.now)

    def standby_ready(self) -> int:
        return sum(t <= self._env.now for t in self._pool.standby)

    def warm_standby(self, k: int) -> None:
        """``k`` standbys warm from time 0 (live: started with the first instances)."""
        self._pool.standby_target, self._pool.standby = k, [0.0] * k

    def resizable(self) -> bool:
        """A CPU instance under the quota model (live: one with a cgroup)."""
        return self._pool.quota_model

    def scale_to(self, n: int, standby: int | None = None) -> None:
        self.target = n
        if n != self._pool.live_count():
            self._server.scale_events += 1
        for ready in self._pool.scale_to(self._env.now, n, standby):
            self._env.schedule(ready, self._server.batcher.kick)


class SimGroupView:
    """A simulated group as the controller sees a live ``GroupRuntime``."""

    def __init__(self, server: GroupServer, env: Environment, name: str) -> None:
        assert server.core is not None
        self._server = server
        self.name = name
        self.plan = server.group
        self.fn = server.fn
        self.pool = SimPoolView(server, env)

    @property
    def model(self) -> Any:
        core = self._server.core
        assert core is not None
        return core.model

    @property
    def live_fn(self) -> Any:
        return self._server.live_fn

    @property
    def busy_s(self) -> float:
        return self._server.busy_s

    @property
    def rejected(self) -> int:
        return self._server.rejected

    @property
    def offered_items(self) -> int:
        return self._server.offered

    def queue_depth(self) -> int:
        return len(self._server.batcher)

    def room_vcpu(self) -> float:
        return instance_room(self.fn.vcpu, self.pool.cfg.threads)

    def resize(self, vcpu: float) -> None:
        self._server.resize(vcpu)


@dataclass
class SimControl:
    """What the controller reads of a live ``Server``: its groups, options, cores."""

    plan: Plan
    groups: list[SimGroupView]
    cores: float
    options: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def max_instances(self, g: SimGroupView) -> int:
        return max(1, int(self.cores // g.room_vcpu() + 1e-9))

    def standby_for(self, g: SimGroupView, serving: int) -> int:
        """As the live server's (local backend, autoscaling): ``standby`` within the limit."""
        return min(self.options.standby, max(0, self.max_instances(g) - serving))

    def _record(self, action: str, reason: str) -> None:
        self.history.append({"action": action, "reason": reason})


def start_controller(env: Environment, plan: Plan, servers: list[GroupServer], cores: float | None,
                     until_s: float, standby: int = 1) -> SimControl:  # fmt: skip
    """Run the live controller's scale step every second of virtual time until ``until_s``."""
    from batchwise.serving.control import Controller
    from batchwise.serving.server import ServeOptions

    options = ServeOptions(replan_window_s=None, standby=standby)
    views = [SimGroupView(s, env, f"g{i}") for i, s in enumerate(servers)]
    machine = float(cores if cores is not None else os.cpu_count() or 1)
    control = SimControl(plan, views, machine, options)
    controller = Controller(control, cores=machine)  # type: ignore[arg-type]
    for v, s in zip(views, servers, strict=True):
        # started with the serving ones: warm when the load begins, as live
        v.pool.warm_standby(control.standby_for(v, v.pool.live_count()))
        s.rescue = lambda v=v: controller.rescue(v, env.now)  # type: ignore[misc]
    step = options.scale_interval_s

    def tick() -> None:
        controller.scale_step(env.now)
        if env.now + step <= until_s:
            env.schedule(env.now + step, tick)

    if step <= until_s:
        env.schedule(step, tick)
    return control
