"""GroupCore: the decisions a group makes live and in the simulator, on a virtual clock."""

from __future__ import annotations

import pytest

from batchwise.serving.admission import Verdict
from batchwise.serving.deadlines import live_timeouts
from batchwise.serving.group_core import RETIME_EVERY, GroupCore
from batchwise.sim.core import Environment, SimTimer
from sim.factories import LATENCY, PROFILE, cpu_fn, make_group


def core(slo: float = 3.0, timeout: float = 2.5) -> tuple[GroupCore, list, Environment]:
    fn = cpu_fn(4, 2.0)  # VGG19, batch 4: L_max ~0.96 s
    group = make_group({"a": 1.0}, {"a": slo}, fn, 4, timeouts={"a": timeout})
    env, sent = Environment(), []
    return GroupCore(group, PROFILE, 0.015, SimTimer(env), sent.append), sent, env


def test_timeouts_start_fitted_to_the_profile_and_overhead():
    c, _, _ = core()
    fn = cpu_fn(4, 2.0)
    want = live_timeouts({"a": 2.5}, {"a": 3.0}, LATENCY.max(fn, 4), 0.015)
    assert c.policy.timeouts_s == pytest.approx(want)
    assert c.policy.timeouts_s["a"] < 2.5  # the SLO bound bites: 3.0 - 0.96 - 0.015


def test_faster_batches_calibrate_the_model_and_lengthen_the_timeouts():
    c, _, _ = core()
    before = c.policy.timeouts_s["a"]
    fast = 0.5 * LATENCY.avg(cpu_fn(4, 2.0), 4)
    for _ in range(RETIME_EVERY - 1):
        c.served(4, fast)
    assert c.policy.timeouts_s["a"] == before  # re-fitted only every RETIME_EVERY batches
    c.served(4, fast)
    assert c.model.factor == pytest.approx(0.5, rel=0.01)
    assert c.policy.timeouts_s["a"] > before + 0.3
    assert c.batcher.policy is c.policy  # the batcher runs the re-fitted policy


def test_an_idle_group_admits_and_a_queue_past_the_deadline_refuses():
    c, _, env = core()
    now = env.now
    idle = c.admit("a", 1, now + 3.0, c.snapshot(now, [], [now]))
    assert idle.admit and not idle.queued
    busy = c.snapshot(now, [4, 4, 4], [now + 2.0])  # 2 s to go, then three full batches
    late = c.admit("a", 1, now + 3.0, busy)
    assert not late.admit and late.retry_after_s >= 1


def test_the_buffer_and_its_earliest_deadline_enter_the_snapshot():
    c, sent, env = core()
    c.batcher.submit(1, "a")
    c.batcher.submit(2, "a")
    snap = c.snapshot(env.now, [4], [5.0])
    assert snap.buffered == 2 and snap.queued == (4,) and snap.free_at == (5.0,)
    assert snap.earliest_deadline == pytest.approx(c.policy.timeouts_s["a"])
    assert sent == []  # nothing dispatched before the timeout


def test_only_waits_long_enough_to_say_something_are_learned():
    queued = Verdict(True, 1.0, 0.0, queued=True, wait_s=0.5)
    assert GroupCore.learnable_wait(queued, slo=1.0) == 0.5
    assert GroupCore.learnable_wait(queued, slo=10.0) is None  # 5 % of its SLO
    free = Verdict(True, 1.0, 0.0, queued=False, wait_s=0.0)
    assert GroupCore.learnable_wait(free, slo=1.0) is None


def test_a_tight_request_is_admitted_ahead_of_a_loose_queue_that_refuses_more_loose_ones():
    """In deadline order: with every instance busy and 16 loose items buffered, a
    tight request still makes its SLO (it is picked first), a loose one would not."""
    fn = cpu_fn(4, 2.0)  # VGG19, batch 4: ~0.6 s a full batch
    group = make_group({"tight": 1.0, "loose": 1.0}, {"tight": 2.5, "loose": 4.0}, fn, 4)
    env, sent = Environment(), []
    c = GroupCore(
        group, PROFILE, 0.015, SimTimer(env), sent.append, gate=lambda: False, order="deadline"
    )
    for i in range(16):
        c.batcher.submit(i, "loose")
    assert sent == []  # held: no instance can take a batch
    busy = c.snapshot(env.now, [], [env.now + 1.0])
    tight = c.admit("tight", 1, env.now + 2.5, busy)
    loose = c.admit("loose", 1, env.now + 4.0, busy)
    assert tight.admit and tight.finish_s <= env.now + 2.5 - 0.005
    assert not loose.admit and loose.finish_s > env.now + 4.0


def test_jumpers_are_expected_from_tighter_apps_arrival_rates():
    fn = cpu_fn(4, 2.0)
    group = make_group({"tight": 1.0, "loose": 1.0}, {"tight": 2.5, "loose": 4.0}, fn, 4)
    env = Environment()
    c = GroupCore(
        group, PROFILE, 0.015, SimTimer(env), lambda b: None, gate=lambda: False, order="deadline"
    )
    busy = c.snapshot(env.now, [], [env.now + 0.5])
    before = c.admit("loose", 1, env.now + 4.0, busy)
    for _ in range(40):  # tight requests arriving fast (counted whether admitted or not)
        c.arrivals.add("tight", env.now)
    after = c.admit("loose", 1, env.now + 4.0, busy)
    assert after.finish_s > before.finish_s + 1.0  # ~20 items/s x 1.5 s ahead of it
    assert not after.admit and before.admit
    tight = c.admit("tight", 1, env.now + 2.5, busy)  # loose arrivals never overtake it
    assert tight.admit


@pytest.mark.parametrize(("order", "shared"), [("arrival", True), ("deadline", False)])
def test_the_wait_stretch_is_the_groups_in_arrival_order_and_each_apps_in_deadline_order(
    order: str, shared: bool
) -> None:
    """Arrival order: every app waits in one FIFO, so waits learned from one app's
    requests correct another's (a rarely admitted app has no samples of its own)."""
    fn = cpu_fn(4, 2.0)
    group = make_group({"a": 1.0, "b": 1.0}, {"a": 3.0, "b": 3.0}, fn, 4,
                       timeouts={"a": 2.5, "b": 2.5})  # fmt: skip
    env = Environment()
    c = GroupCore(group, PROFILE, 0.015, SimTimer(env), [].append, order=order)
    for _ in range(64):  # a's queued requests waited twice as long as replayed
        c.learn_wait("a", env.now, 1.0, 2.0)
    assert c.queue_stretch(env.now) == pytest.approx(2.0)
    b_stretch = c._stretch("b").value(env.now)
    assert b_stretch == (pytest.approx(2.0) if shared else 1.5)  # 1.5: b's own, still cold


def _two_apps(share: str) -> tuple[GroupCore, Environment]:
    """Arrival order, no instance free: 3 loose items buffered, one full batch queued."""
    fn = cpu_fn(4, 2.0)  # VGG19, batch 4: ~0.6 s a full batch
    group = make_group({"tight": 1.0, "loose": 1.0}, {"tight": 2.5, "loose": 6.0}, fn, 4)
    env = Environment()
    c = GroupCore(group, PROFILE, 0.015, SimTimer(env), lambda b: None, gate=lambda: False,
                  share=share)  # fmt: skip
    for i in range(3):
        c.batcher.submit(i, "loose")
    return c, env


@pytest.mark.parametrize(("share", "admitted"), [("first-come", True), ("even", False)])
def test_an_even_share_holds_a_loose_request_to_the_tight_apps_slo_while_it_is_active(
    share: str, admitted: bool
) -> None:
    """A queue the loose app can wait out (~3.5 s of it) but the tight one cannot: under
    first-come the loose request is admitted (and the tight ones arriving behind it are
    refused); under an even share it is refused too, so the queue stays short enough for
    the tight app's next requests."""
    c, env = _two_apps(share)
    c.arrivals.add("tight", env.now)  # the tight app is active
    busy = c.snapshot(env.now, [4], [env.now + 1.0])
    loose = c.admit("loose", 1, env.now + 6.0, busy)
    assert loose.queued and loose.admit is admitted
    assert loose.finish_s < env.now + 6.0 - 0.005 if admitted else loose.finish_s > 2.5


def test_an_even_share_forgets_a_tight_app_that_stopped_sending():
    c, env = _two_apps("even")
    c.arrivals.add("tight", env.now)
    assert not c.admit("loose", 1, env.now + 6.0, c.snapshot(env.now, [4], [1.0])).admit
    env.run(until=10.0)  # 10 s without a tight request: only the loose app is active
    busy = c.snapshot(env.now, [4], [env.now + 1.0])
    assert c.admit("loose", 1, env.now + 6.0, busy).admit


def test_an_unknown_share_is_refused():
    with pytest.raises(ValueError, match="share"):
        _two_apps("fair")
