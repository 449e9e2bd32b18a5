"""The controller's vertical surge, decision by decision, on fake groups and a fake clock:
when a group surges, that a lost room is given back at once, and that the end of the
pressure waits for the scale-down delay (the live wiring is in test_autoscale.py)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from batchwise.perf.cfs import instance_room
from batchwise.perf.functions import Function
from batchwise.serving import control
from batchwise.serving.control import Controller
from batchwise.serving.server import ServeOptions


class FakePool:
    def __init__(self, live: int, threads: int) -> None:
        self.live, self.cfg = live, SimpleNamespace(threads=threads)
        self.standby_target = 0

    def live_count(self) -> int:
        return self.live

    def ready_count(self) -> int:
        return self.live

    def resizable(self) -> bool:
        return True

    def scale_to(self, n: int, standby: int | None = None) -> None:
        self.live = n
        self.standby_target = self.standby_target if standby is None else standby


class FakeGroup:
    """What the controller reads of a group; ``work(busy)`` adds one interval's busy time."""

    def __init__(self, name: str, vcpu: float, live: int, threads: int = 1) -> None:
        self.name = name
        self.fn = self.live_fn = Function("cpu", vcpu, 1.0)
        self.plan = SimpleNamespace(batch_size=4)
        self.busy_s, self.rejected, self.offered_items = 0.0, 0, 0
        self.pool = FakePool(live, threads)
        # a CPU-bound model: a surged instance is worth live / planned vCPU of the plan's
        self.model = SimpleNamespace(speedup=lambda b: self.live_fn.vcpu / self.fn.vcpu,
                                     gain=lambda v, b: v / self.fn.vcpu,
                                     avg=lambda b: 0.01 * b)  # fmt: skip

    def queue_depth(self) -> int:
        return 0

    def room_vcpu(self) -> float:
        return instance_room(self.fn.vcpu, self.pool.cfg.threads)

    def resize(self, vcpu: float) -> None:
        self.live_fn = replace(self.fn, vcpu=vcpu)

    def work(self, busy_per_instance: float, seconds: float = 1.0) -> None:
        """Busy fraction of each instance over the next ``seconds``, at the size in force."""
        self.busy_s += busy_per_instance * self.pool.live * seconds


@pytest.fixture
def make(monkeypatch):
    monkeypatch.setattr(control, "instance_cores", lambda: 2.0)

    def build(*groups: FakeGroup, delay_s: float = 5.0) -> tuple[Controller, list]:
        history: list[tuple[str, str]] = []
        server = SimpleNamespace(
            options=ServeOptions(scale_down_delay_s=delay_s),
            plan=SimpleNamespace(app_rates=dict), groups=list(groups),
            max_instances=lambda g: 8, _record=lambda a, r: history.append((a, r)),
            standby_for=lambda g, n: 0,
        )  # fmt: skip
        return Controller(server), history

    return build


def test_a_group_bound_by_the_cores_takes_the_free_vcpu_and_keeps_it_while_bound(make):
    g = FakeGroup("g0", 0.7, 2)
    ctl, history = make(g)
    ctl.scale_step(0.0)  # first sample: no interval yet
    g.work(1.0)  # both busy all the time: wants 3 of 0.7, the cores hold 2
    ctl.scale_step(1.0)
    assert g.pool.live == 2 and g.live_fn.vcpu == pytest.approx(1.0)  # one thread: one core
    assert history[-1][0] == "surge" and "cores hold" in history[-1][1]
    g.work(0.8)  # the surge's own speed-up: 0.8 s at 1.0 vCPU is 1.14 s at the plan's 0.7
    ctl.scale_step(2.0)
    assert g.live_fn.vcpu == pytest.approx(1.0)


def test_an_instance_past_its_threads_takes_only_their_cores(make):
    """1.1 vCPU on one thread holds one core: two fit on 2 cores and both start when
    the load wants them (counted at 1.1, the second core idled while requests were
    refused)."""
    g = FakeGroup("g0", 1.1, 1)
    ctl, history = make(g)
    ctl.scale_step(0.0)
    for t in (1.0, 2.0, 3.0):  # busy all the time: wants 2 (after the cooldown)
        g.work(1.0)
        ctl.scale_step(t)
    assert g.pool.live == 2
    assert history[-1][0] == "scale" and "1 -> 2" in history[-1][1]
    assert instance_room(1.1, 1) == 1.0 and instance_room(1.6, 2) == 1.6
    assert instance_room(0.5, 1) == 0.5


def test_the_end_of_the_pressure_waits_for_the_scale_down_delay(make):
    g = FakeGroup("g0", 0.7, 2)
    ctl, history = make(g, delay_s=5.0)
    ctl.scale_step(0.0)
    g.work(1.0)
    ctl.scale_step(1.0)
    assert g.live_fn.vcpu == pytest.approx(1.0)
    for t in range(2, 7):
        g.work(0.3)  # quiet now: wants 2 or fewer
        ctl.scale_step(float(t))
    assert g.live_fn.vcpu == pytest.approx(1.0)  # wanted back for 4 s < 5 s
    g.work(0.3)
    ctl.scale_step(7.0)
    assert g.live_fn.vcpu == pytest.approx(0.7)
    assert "back to the plan" in history[-1][1]


def test_room_another_group_takes_is_given_back_at_once(make):
    a, b = FakeGroup("a", 0.7, 2), FakeGroup("b", 0.3, 1)
    b.model.gain = lambda v, b_: 1.0  # b flat in vCPUs: it grows by instances
    ctl, _ = make(a, b)
    ctl.scale_step(0.0)
    a.work(1.0)  # a wants 3, the cores hold 2 beside b's one; b is idle
    ctl.scale_step(1.0)
    assert a.pool.live == 2 and b.live_fn.vcpu == 0.3
    assert a.live_fn.vcpu == pytest.approx(0.85)  # 0.3 free, split over a's two
    a.work(1.0, 2.0)
    b.work(1.0, 2.0)  # b wants 2 now, and 0.3 is free at the planned sizes: it starts one
    ctl.scale_step(3.0)
    assert b.pool.live == 2
    assert a.live_fn.vcpu == pytest.approx(0.7)  # nothing free: back at once, no delay


def test_room_another_group_claims_by_growing_is_given_back_at_once(make):
    """The same, with b growing vertically instead of starting its second instance: it is
    owed the 0.3 that instance would have held, ahead of a's surge."""
    a, b = FakeGroup("a", 0.7, 2), FakeGroup("b", 0.3, 1)
    ctl, _ = make(a, b)
    ctl.scale_step(0.0)
    a.work(1.0)
    ctl.scale_step(1.0)
    assert a.live_fn.vcpu == pytest.approx(0.85)
    a.work(1.0, 2.0)
    b.work(1.0, 2.0)
    ctl.scale_step(3.0)
    assert b.pool.live == 1 and b.live_fn.vcpu == pytest.approx(0.6)
    assert a.live_fn.vcpu == pytest.approx(0.7)


def test_no_surge_when_turned_off_or_when_the_pool_cannot_resize(make):
    g = FakeGroup("g0", 0.7, 2)
    ctl, _ = make(g)
    ctl.opts = replace(ctl.opts, surge=False)
    ctl.scale_step(0.0)
    g.work(1.0)
    ctl.scale_step(1.0)
    assert g.live_fn.vcpu == 0.7
    h = FakeGroup("h0", 0.7, 2)
    h.pool.resizable = lambda: False  # a harvester owns the quotas, or a Ray actor
    ctl2, _ = make(h)
    ctl2.scale_step(0.0)
    h.work(1.0)
    ctl2.scale_step(1.0)
    assert h.live_fn.vcpu == 0.7


def test_vertical_first_fewer_larger_instances_before_more_small_ones(make):
    """0.5-vCPU one-thread instances on 2 cores, 5 of them wanted (more than the cores
    hold): two grown to a core each, not four at the plan's size — the same CPU, batches
    twice as fast, two processes fewer."""
    g = FakeGroup("g0", 0.5, 1)
    ctl, history = make(g)
    ctl.scale_step(0.0)
    g.work(1.0, 3.0)
    g.offered_items = 1020  # 340 items/s x 0.01 s per item = 3.4 instances: 5 at 70 %
    ctl.scale_step(3.0)  # past the 2 s cooldown
    assert g.pool.live == 2  # not 4
    assert g.live_fn.vcpu == pytest.approx(1.0)  # grown: owed what the other two would hold
    scale = next(r for a, r in history if a == "scale")
    assert "5 of the plan's size = 2 at up to 1 vCPU" in scale


def test_vertical_growth_starts_only_what_the_work_needs(make):
    g = FakeGroup("g0", 0.5, 1)
    ctl, _ = make(g)
    ctl.scale_step(0.0)
    g.work(1.0, 3.0)  # busy 100 %: 2 of the plan's size wanted = one instance at a whole core
    ctl.scale_step(3.0)
    assert g.pool.live == 1 and g.live_fn.vcpu == pytest.approx(1.0)


def test_a_model_flat_in_vcpus_grows_horizontally(make):
    g = FakeGroup("g0", 0.5, 1)
    g.model.gain = lambda v, b: 1.0  # a sleep: more vCPU buys nothing
    ctl, _ = make(g)
    ctl.scale_step(0.0)
    g.work(1.0, 3.0)
    g.offered_items = 1020  # 340 items/s
    ctl.scale_step(3.0)
    assert g.pool.live == 4 and g.live_fn.vcpu == 0.5  # all the cores hold
