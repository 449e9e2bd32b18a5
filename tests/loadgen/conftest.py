"""Load-generator tests use the live-gateway helpers of tests/serving (``live``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
