"""Bounds on what a config file may ask for, so that no input can hang or exhaust memory.

Why: a typo such as ``vcpu_step: 0.0000001`` or ``rate: 1e12`` is a valid number
but asks for a billion-row grid or a trillion simulated requests. Every loader and
command checks against these named limits and says which one was hit, so a user
gets a clear error in milliseconds instead of a hang. They are far above any real
workload; the README's "Limits" table lists them.
"""

from __future__ import annotations

MAX_FILE_BYTES = 64 * 1024 * 1024
"""Largest config/plan/trace file read (bytes)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings/lists in a config file."""
MAX_VALUES = 2_000_000
"""Most values (scalars, lists, mappings) a config file may hold once YAML aliases are expanded."""
MAX_APPS = 10_000
"""Most apps in one apps file or plan."""
MAX_RATE = 1_000_000.0
"""Largest request rate of one app (requests/s)."""
MAX_SLO_S = 86_400.0
"""Largest latency SLO (s): one day."""
MAX_BATCH = 1024
"""Largest batch size a profile may describe or a plan may use."""
MAX_VCPU = 1024.0
"""Largest function size in vCPUs a price book may sell."""
MAX_GPU_MEMORY_GB = 1024
"""Largest GPU memory (GB) a price book or profile may name."""
MAX_GRID_SIZES = 100_000
"""Most CPU function sizes a price book may define ((vcpu_max - vcpu_min) / vcpu_step)."""
MAX_TABLE_ROWS = 1_000_000
"""Most (function, batch) configurations a planner may enumerate."""
MAX_SIM_REQUESTS = 10_000_000
"""Most requests one simulation may generate (expected rate x duration)."""
MAX_DURATION_S = 30 * 86_400.0
"""Longest simulated duration (s): 30 days."""
MIN_WINDOW_S = 1.0
"""Shortest re-planning window (s)."""
MAX_REPLAN_WINDOWS = 100_000
"""Most re-planning windows in one simulation (duration / window)."""
