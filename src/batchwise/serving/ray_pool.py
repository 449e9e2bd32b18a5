"""A group's function instances as Ray actors: the same routing as :class:`GroupPool`.

Each instance is one actor wrapping :class:`~batchwise.serving.instance.Instance` (the
model side that a local instance runs behind its socket), so it loads the model once and
runs one batch at a time. Routing, queueing, draining and the lost-batch hand-back are
:class:`GroupPool`'s own (this class only replaces how an instance starts, runs a batch
and ends): a batch is formed when an actor is idle (late binding);
an actor that dies under a batch (``RayActorError``, its node gone included)
hands the batch to ``on_lost`` and is replaced unless the pool is closing.

"Ready" means warm: an actor counts only after its ``warm_up`` call returned.

CPU quota: ``num_cpus = vcpu`` (fractions are fine) is Ray's *bookkeeping* of CPUs for
placement; nothing throttles the actor's process to that share, so the mechanism is
reported as ``"ray"`` (not a cgroup, not a duty cycle: the instance does not rest after a
batch). Its runtime threads are capped by ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to
``threads`` in the actor's environment.

Where: ``address`` (or ``RAY_ADDRESS``) connects to a running cluster; with neither, a
local Ray starts with every core and no dashboard. An already initialised Ray is used
as it is. User models (``module:Class``) are imported from ``cfg.base`` on the actor's
node, which must therefore see the same folder (one machine, or shared storage).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from batchwise.backends.ray import connect
from batchwise.resources.cpu_quota import CpuQuota
from batchwise.serving.instance import Instance, InstanceConfig
from batchwise.serving.pool import START_TIMEOUT_S, Batch, GroupPool, Member

log = logging.getLogger("batchwise.serving")

RAY_QUOTA = "ray"
"""The CPU-quota mechanism reported for actors: Ray's ``num_cpus`` accounting only."""


class InstanceActor:
    """One function instance inside a Ray worker process (``max_concurrency`` 1)."""

    def __init__(self, cfg_json: str) -> None:
        cfg = InstanceConfig(**json.loads(cfg_json))
        if cfg.base not in sys.path:  # user modules sit beside the apps file
            sys.path.insert(0, cfg.base)
        self.instance = Instance(cfg)

    def warm_up(self) -> tuple[Any, Any, int, str]:
        """Run the warm-up batch; then ``(inputs, outputs, pid, node id)`` (the greeting)."""
        import ray

        self.instance.warm_up()
        inputs, outputs = self.instance.schema()
        return inputs, outputs, os.getpid(), ray.get_runtime_context().get_node_id()

    def run(self, records: list[Any]) -> tuple[list[Any], float]:
        return self.instance.run(records)


@dataclass
class ActorMember(Member):
    actor: Any = None
    pid: int | None = None  # the actor's process, once warm
    local: bool = False  # on this (the gateway's) node: its pid means something here


class RayGroupPool(GroupPool):
    """Instances of one group as Ray actors on any Ray cluster (``num_cpus = vcpu``)."""

    def __init__(self, name: str, cfg: InstanceConfig, on_lost: Callable[[Batch], None],
                 free_estimate: Callable[[Batch], float], now: Callable[[], float],
                 address: str | None = None) -> None:  # fmt: skip
        # GroupPool's sock_dir and local-process backend stay unused: every transport
        # method (_spawn, _run, _close, _forget, kill_one, pids) is replaced below.
        super().__init__(name, cfg, "", on_lost, free_estimate, now)
        self.ray = connect(address, num_cpus=os.cpu_count())
        self._node = self.ray.get_runtime_context().get_node_id()
        self._actor_cls = self.ray.remote(InstanceActor)
        threads = str(max(1, cfg.threads))
        self._options = {"num_cpus": cfg.vcpu, "max_restarts": 0, "max_task_retries": 0,
                         "runtime_env": {"env_vars": {"OMP_NUM_THREADS": threads,
                                                      "MKL_NUM_THREADS": threads}}}  # fmt: skip
        self._cfg_json = replace(cfg, base=os.path.abspath(cfg.base), cgroup=None,
                                 mechanism=RAY_QUOTA).to_json()  # fmt: skip

    def resizable(self) -> bool:
        """No: an actor's ``num_cpus`` is Ray's bookkeeping, fixed when it is placed."""
        return False

    # -- start ----------------------------------------------------------------------------
    def _spawn(self, standby: bool = False) -> None:
        name = f"{self.name}-i{next(self._seq)}"
        actor = self._actor_cls.options(**self._options).remote(self._cfg_json)
        member = ActorMember(name, CpuQuota(self.cfg.vcpu, RAY_QUOTA), "", actor=actor,
                             standby=standby)  # fmt: skip
        self.members[name] = member
        self.starts += 1
        self._track(self._warm(member))

    async def _warm(self, m: ActorMember) -> None:
        errors = self.ray.exceptions
        try:
            inputs, outputs, m.pid, node = await asyncio.wait_for(
                m.actor.warm_up.remote(), START_TIMEOUT_S)  # fmt: skip
        except (errors.RayError, TimeoutError) as exc:
            if m.name not in self.members:  # closed (or killed by close) while starting
                return
            self._start_failed(m, f"instance {m.name} ended before it was ready: "
                               f"{_last_line(exc)}")  # fmt: skip
            return
        if m.name not in self.members:
            return
        m.local = node == self._node
        self._became_ready(m, (inputs, outputs), f" (Ray actor, pid {m.pid})")

    # -- work -----------------------------------------------------------------------------
    async def _run(self, m: ActorMember, batch: Batch) -> None:  # type: ignore[override]
        errors = self.ray.exceptions
        batch.attempts += 1
        t0 = self.now()
        died: BaseException | None = None
        try:
            outputs, _service = await m.actor.run.remote([it.record for it in batch.items])
            result: tuple[str, Any] = ("ok", outputs)
        except errors.RayTaskError as exc:  # the model raised; the actor lives on
            result = ("error", _model_error(exc))
        except errors.RayError as exc:  # the actor, its worker or its node died
            died = exc
        busy = self.now() - t0
        self._settle(m, batch, None if died is not None else result, busy,
                     _last_line(died) if died is not None else "")  # fmt: skip

    # -- end ------------------------------------------------------------------------------
    def _close(self, m: Member) -> None:
        """An idle (or still starting) actor leaves at once: nothing of it is in flight."""
        self._forget(m)

    def _forget(self, m: Member) -> None:
        self.members.pop(m.name, None)
        self._kill(m)

    def _kill(self, m: Member) -> None:
        with contextlib.suppress(self.ray.exceptions.RayError):
            self.ray.kill(m.actor, no_restart=True)  # type: ignore[attr-defined]

    def kill_one(self) -> str | None:
        """Kill a busy actor if any, else any (failure tests and chaos)."""
        ranked = sorted(self.members.values(), key=lambda m: m.batch is None)
        if not ranked:
            return None
        self._kill(ranked[0])
        return ranked[0].name

    def pids(self) -> list[int]:
        """PIDs of the warm actors on this node (elsewhere a PID names nothing here)."""
        return [m.pid for m in self.members.values()
                if isinstance(m, ActorMember) and m.local and m.pid is not None]  # fmt: skip


def _model_error(exc: BaseException) -> str:
    """``Type: message`` of the model's own exception (as a local instance reports it)."""
    cause = getattr(exc, "cause", None)
    if cause is None:
        return _last_line(exc)
    return f"{type(cause).__name__}: {cause}"


def _last_line(exc: BaseException) -> str:
    """The gist of a Ray error (its text ends with the cause after a traceback)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


__all__ = ["RAY_QUOTA", "InstanceActor", "RayGroupPool", "connect"]
