"""The event loop's lateness: a time-weighted average (pure) and the task that samples it."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from batchwise.serving.loop_lag import LagTracker, LoopLag


def test_one_hiccup_barely_moves_the_average_but_a_late_loop_does():
    t = LagTracker(tau_s=0.5)
    now = 0.0
    for _ in range(100):  # a healthy loop: 10 ms ticks, on time
        now += 0.01
        t.observe(now, 0.0)
    now += 0.04
    t.observe(now, 0.03)  # one 30 ms hiccup
    assert t.value() == pytest.approx(0.03 * (1 - math.exp(-0.04 / 0.5)))
    assert t.value() < 0.003
    for _ in range(10):  # saturated: every tick 100 ms late, for 1.1 s
        now += 0.11
        t.observe(now, 0.1)
    assert t.value() > 0.08
    t.observe(now + 0.01, -0.5)  # an early wake-up is not negative lateness
    assert t.value() > 0.07


def test_a_blocked_loop_shows_as_lag_then_recovers():
    async def main() -> tuple[float, float, float]:
        lag = LoopLag(tick_s=0.005, tau_s=0.1)
        lag.start()
        await asyncio.sleep(0.05)
        idle = lag.lag_s()
        for _ in range(5):  # a handler that hogs the loop, again and again
            time.sleep(0.05)
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        blocked = lag.lag_s()
        await asyncio.sleep(0.6)
        after = lag.lag_s()
        await lag.stop()
        return idle, blocked, after

    idle, blocked, after = asyncio.run(main())
    assert blocked > 0.015 and blocked > 5 * idle
    assert after < blocked / 4
