"""Worker-count policy (inter-node elasticity) with a fake clock."""

from __future__ import annotations

from batchwise.batch.controller import ScaleContext, ScaleState, WorkerScaler


def ctx(now=0.0, backlog=100, workers=0, lo=1, hi=8, free=8.0, cpus=1.0):
    return ScaleContext(now, backlog, workers, lo, hi, free, cpus)


def test_first_decision_takes_free_cpus_up_to_max():
    assert WorkerScaler().decide(ctx(free=3.0), ScaleState())[0] == 3
    assert WorkerScaler().decide(ctx(free=32.0), ScaleState())[0] == 8


def test_never_more_workers_than_shards_left_nor_fewer_than_min():
    s = WorkerScaler()
    assert s.target(ctx(backlog=2, free=8.0)) == 2
    assert s.target(ctx(backlog=0, free=0.0, lo=2)) == 2


def test_cpus_per_worker_and_half_cpu_noise_margin():
    s = WorkerScaler()
    assert s.target(ctx(free=3.9, cpus=2.0)) == 2  # 1.95 slots: worth a second worker
    assert s.target(ctx(free=3.0, cpus=2.0)) == 2  # 1.5 slots
    assert s.target(ctx(free=2.9, cpus=2.0)) == 1  # 1.45 slots


def test_dead_workers_replaced_at_once_changes_wait_for_cooldown():
    s = WorkerScaler(cooldown_s=5.0)
    target, state = s.decide(ctx(now=0.0, workers=0, free=4.0), ScaleState())
    assert target == 4
    # A worker died (3 left) and its CPU is busy elsewhere: keep the target for now.
    assert s.decide(ctx(now=1.0, workers=3, free=0.0), state) == (4, state)
    # After the cooldown the job shrinks to what the machine can give it.
    target, state = s.decide(ctx(now=6.0, workers=3, free=0.0), state)
    assert target == 3 and state.last_change == 6.0


def test_capacity_coming_back_grows_the_job():
    s = WorkerScaler(cooldown_s=5.0)
    state = ScaleState(value=2, last_change=0.0)
    assert s.decide(ctx(now=10.0, workers=2, free=2.0), state)[0] == 4
