"""Job files: a valid example loads; mistakes name file, field and line."""

from __future__ import annotations

import pytest

from batchwise.config.job import JobSpec, load_job
from batchwise.errors import ConfigError

GOOD = """\
input: {kind: jsonl, path: "data/*.jsonl"}
pipeline:
  preprocess: mypkg.pre:clean
  models:
    - {name: encoder, model: minilm, batch_size: 64}
    - {name: classifier, model: clf.onnx}
output: {path: out, format: parquet}
shards: {bytes: 8388608}
workers: {min: 1, max: 4}
backend: ray
"""


def test_valid_job_loads_with_defaults(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text(GOOD)
    job = load_job(p)
    assert isinstance(job, JobSpec)
    assert [m.name for m in job.pipeline.models] == ["encoder", "classifier"]
    assert job.pipeline.models[1].batch_size == 32
    assert job.workers.bounds == (1, 4)
    assert job.shards.bytes == 8388608 and job.shards.records is None


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("preprocess: mypkg.pre:clean", "preprocess: not a callable", ":3: pipeline.preprocess"),
        ("batch_size: 64", "batch_size: 0", ":5: pipeline.models.0.batch_size"),
        ("{min: 1, max: 4}", "{min: 5, max: 4}", ":9: workers: min (5) must not exceed max"),
        ("{bytes: 8388608}", "{bytes: 1, records: 2}", ":8: shards: give either"),
        ("kind: jsonl", "kind: xml", ":1: input.kind"),
        ("name: classifier", "name: encoder", ":5: pipeline.models: model stage names"),
        ("backend: ray", "backend: k8s", ":10: backend"),
    ],
)
def test_mistakes_name_file_field_and_line(tmp_path, old, new, where):
    p = tmp_path / "job.yaml"
    p.write_text(GOOD.replace(old, new))
    with pytest.raises(ConfigError) as exc:
        load_job(p)
    assert f"{p}{where}" in str(exc.value)
