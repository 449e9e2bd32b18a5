"""Discrete-event simulation: the engine, serving simulation and re-planning over time.

The simulator drives the *same* batching policy object the live gateway uses
(:class:`batchwise.serving.batching.MultiSloBatchPolicy`), with virtual time.
"""

from batchwise.sim.core import NORMAL, URGENT, EmptySchedule, Environment, Handle
from batchwise.sim.replan import (
    DEFAULT_REPLAN_WINDOW_S,
    AdaptiveResult,
    WindowStats,
    simulate_adaptive,
)
from batchwise.sim.serving import AppStats, GroupServer, GroupStats, PlanRunner, SimResult, simulate

__all__ = [
    "DEFAULT_REPLAN_WINDOW_S",
    "NORMAL",
    "URGENT",
    "AdaptiveResult",
    "AppStats",
    "EmptySchedule",
    "Environment",
    "GroupServer",
    "GroupStats",
    "Handle",
    "PlanRunner",
    "SimResult",
    "WindowStats",
    "simulate",
    "simulate_adaptive",
]
