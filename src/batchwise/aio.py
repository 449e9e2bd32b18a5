"""Running a coroutine on the fastest event loop installed (uvloop, else asyncio's own).

Why one helper: the gateway, the load generator and the profiler's drivers are all
event-loop bound under load, and uvloop's transports and selector cost a fraction of
asyncio's pure-Python ones (measured on the gateway at 3x overload: the default loop's
selector and socket writes were a third of its busy time). uvicorn picks uvloop only for
loops it creates itself; batchwise creates its loops, so it must pick as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed; None: asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on :func:`loop_factory`'s loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
