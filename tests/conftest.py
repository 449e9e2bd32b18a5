"""Shared fixtures: the built-in model profiles, both price books, the paper's Table I and
the sandbox every Ray test starts Ray in."""

from __future__ import annotations

import os
import socket

import pytest

from batchwise.config.apps import AppSpec
from batchwise.config.prices import BUILTIN_PRICE_BOOKS, PriceBook
from batchwise.config.profiles import ModelProfile, builtin_profiles
from utils import table1_apps as _table1_apps


@pytest.fixture(scope="session")
def profiles() -> dict[str, ModelProfile]:
    """The four built-in HarmonyBatch models."""
    return builtin_profiles()


@pytest.fixture(scope="session")
def vgg19(profiles: dict[str, ModelProfile]) -> ModelProfile:
    return profiles["VGG19"]


@pytest.fixture(scope="session")
def bert(profiles: dict[str, ModelProfile]) -> ModelProfile:
    return profiles["Bert"]


@pytest.fixture(scope="session")
def gpt2(profiles: dict[str, ModelProfile]) -> ModelProfile:
    return profiles["GPT-2"]


@pytest.fixture(scope="session")
def videomae(profiles: dict[str, ModelProfile]) -> ModelProfile:
    return profiles["VideoMAE"]


@pytest.fixture(scope="session")
def prices_fc() -> PriceBook:
    """The default price book (variant ``fc``: what Function Compute bills)."""
    return BUILTIN_PRICE_BOOKS["alibaba-fc-2023"]


@pytest.fixture(scope="session")
def prices_paper() -> PriceBook:
    """The paper's Eq. 6 as printed (variant ``paper``)."""
    return BUILTIN_PRICE_BOOKS["paper-eq6"]


@pytest.fixture
def table1_apps() -> list[AppSpec]:
    """Table I: app1 (0.5 s, 5 req/s), app2 (0.8 s, 10 req/s), app3 (1.0 s, 20 req/s)."""
    return _table1_apps()


def _loopback_only() -> bool:
    """Whether this process sees no network but loopback (where Ray may run)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="module")
def ray_sandbox(tmp_path_factory):
    """What every Ray test needs before it starts Ray: no network but loopback (else the
    test skips; ``make test`` runs Ray tests under ``unshare --net``), usage stats off and
    a temporary HOME with an empty ``ray_bootstrap_config.yaml``. The environment comes
    back as it was after the module."""
    if not _loopback_only():
        pytest.skip("Ray tests run only in a loopback-only network namespace (see make test)")
    home = tmp_path_factory.mktemp("home")
    (home / "ray_bootstrap_config.yaml").write_text("")
    saved = dict(os.environ)
    os.environ.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0",
                      RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")  # fmt: skip
    yield home
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def batchwise_cache(tmp_path_factory: pytest.TempPathFactory):
    """One profile cache for the tests that serve MiniLM (it is profiled once, ~40 s)."""
    return tmp_path_factory.mktemp("batchwise-cache")
