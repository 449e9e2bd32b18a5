"""Job files for the batch tests: ``n`` JSONL records ``{"v": i}`` through one model stage."""

from __future__ import annotations

import json
from pathlib import Path


def write_job(tmp_path: Path, n: int, model: str, settings: str, fmt: str = "jsonl") -> Path:
    """Write ``in.jsonl`` and ``job.yaml`` (``settings``: further YAML lines) in tmp_path."""
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"v": i}) + "\n" for i in range(n)))
    job = tmp_path / "job.yaml"
    job.write_text(
        "input: {kind: jsonl, path: in.jsonl}\n"
        f"pipeline: {{models: [{{name: m, model: '{model}', batch_size: 5}}]}}\n"
        f"output: {{path: out, format: {fmt}}}\n" + settings
    )
    return job
