"""Batch tests: user-style model modules in fixtures/ are importable in-process and by
worker processes (through PYTHONPATH)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _importable_models(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", f"{FIXTURES}{os.pathsep}{path}" if path else str(FIXTURES))
