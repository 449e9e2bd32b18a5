"""Intra-node elasticity policy, driven by a fake clock (no threads)."""

from __future__ import annotations

from batchwise.batch.stages import StageContext, StageScaler, StageScalerState, StageStats


def stats(name, threads, fill, busy, top=4):
    return StageStats(name, threads, top, fill, busy)


def ctx(now, *stages, budget=6):
    return StageContext(now, tuple(stages), budget)


def test_backed_up_saturated_stage_gets_a_thread_from_the_budget():
    scaler = StageScaler(cooldown_s=2.0)
    c = ctx(10.0, stats("pre", 1, 0.0, 0.2), stats("model", 1, 1.0, 0.99), budget=3)
    threads, state = scaler.decide(c, StageScalerState())
    assert threads == {"pre": 1, "model": 2} and state.last_change == 10.0


def test_cooldown_holds_changes_until_it_passes():
    scaler = StageScaler(cooldown_s=2.0)
    state = StageScalerState(last_change=10.0)
    c = ctx(11.0, stats("pre", 1, 0.0, 0.2), stats("model", 1, 1.0, 0.99))
    assert scaler.decide(c, state) == ({"pre": 1, "model": 1}, state)
    threads, _ = scaler.decide(ctx(12.0, *c.stages), state)
    assert threads["model"] == 2


def test_without_budget_a_starved_stage_donates_to_the_bottleneck():
    scaler = StageScaler()
    c = ctx(0.0, stats("pre", 3, 0.0, 0.1), stats("model", 1, 0.9, 0.95), budget=4)
    threads, _ = scaler.decide(c, StageScalerState())
    assert threads == {"pre": 2, "model": 2}


def test_stage_at_its_max_is_not_grown_and_busy_stages_keep_threads():
    scaler = StageScaler()
    c = ctx(0.0, stats("model", 1, 1.0, 1.0, top=1), stats("post", 2, 0.0, 0.8), budget=8)
    threads, state = scaler.decide(c, StageScalerState())
    assert threads == {"model": 1, "post": 2} and state == StageScalerState()


def test_idle_surplus_threads_are_given_back_one_at_a_time():
    scaler = StageScaler()
    c = ctx(5.0, stats("pre", 3, 0.0, 0.05), stats("model", 1, 0.3, 0.6))
    threads, state = scaler.decide(c, StageScalerState())
    assert threads == {"pre": 2, "model": 1} and state.last_change == 5.0


def test_a_slow_stage_is_never_starved_over_a_simulated_run():
    """Queue fill follows the threads given: the bottleneck ends with the most threads."""
    scaler, state = StageScaler(cooldown_s=1.0), StageScalerState()
    threads = {"read": 2, "model": 1, "post": 2}
    cost = {"read": 0.2, "model": 1.0, "post": 0.1}  # s per batch per thread
    for step in range(20):
        # A stage's input backs up when its throughput is below the source's (5 batch/s).
        st = []
        for name, n in threads.items():
            rate = n / cost[name]
            fill = 1.0 if rate < 5 else 0.0
            st.append(stats(name, n, fill, min(1.0, 5 / rate)))
        threads, state = scaler.decide(ctx(float(step), *st, budget=8), state)
    assert threads["model"] == 4 and sum(threads.values()) <= 8
