"""Keeping the cyclic garbage collector's pauses out of request latencies.

Why: CPython's collector stops the process while it walks a generation, and a full
(generation 2) collection walks every container object alive — the ~100 000 the
gateway holds after importing FastAPI, pydantic and numpy, the ~180 000 an instance holds
after loading torch and its model. Measured at 3x overload (MiniLM, 2 cores, gc
callbacks timing each collection over 20 s): full collections of 62 ms in the gateway
and 95 ms in each instance, two or three per run — in the instance a whole batch's time
added to every request of that batch, in the gateway and the load generator a refusal
that should take milliseconds. Those objects live as long as the process, so after
start-up :func:`settle` moves them out of the collector's sight (``gc.freeze``, what the
CPython docs recommend for exactly this); it keeps collecting what requests create.
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect once, then freeze everything alive now; returns the frozen objects' count.

    Call it when a process has finished starting (imports, model loaded, warm-up run),
    before it serves; calling it again later freezes what accumulated since."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
