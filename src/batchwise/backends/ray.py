"""Ray as a place to run instances: the one way batch jobs and serving connect to it.

Why one module: batch workers (:mod:`batchwise.batch.ray_backend`) and serving
instances (:mod:`batchwise.serving.ray_pool`) both run as Ray actors, and both must
import Ray only when asked (it is an optional extra), say so in one line when it is
missing, and connect the same way: an already initialised Ray as it is, else
``address`` or ``RAY_ADDRESS``, else a local Ray — never with the dashboard (Ray must
stay on loopback in tests) and without forwarding worker logs to the driver.
"""

from __future__ import annotations

import os
from typing import Any

from batchwise.errors import ConfigError


def ray_module() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"backend 'ray' needs Ray (pip install 'batchwise[ray]'): {exc}") from exc
    return ray


def connect(address: str | None, num_cpus: int | None = None) -> Any:
    """The ``ray`` module, initialised: as it is, else ``address``/RAY_ADDRESS, else local.

    ``num_cpus`` sizes a local start only (None: Ray's own count of this machine).
    """
    ray = ray_module()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, num_cpus=num_cpus, log_to_driver=False)
    return ray
