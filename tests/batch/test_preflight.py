"""Before a job starts: every module, function and model it names is checked, and the
job file's limits hold; a mistake is one error naming file, line and field."""

from __future__ import annotations

import pytest
from jobfiles import write_job

from batchwise.batch.preflight import check_runnable
from batchwise.config.job import load_job
from batchwise.errors import ConfigError


def job_with(tmp_path, model: str = "bw_test_models:SlowDouble", extra: str = ""):
    return write_job(tmp_path, 3, model, extra)


def test_builtin_option_values_are_checked_before_anything_starts(tmp_path):
    job = job_with(tmp_path, "minilm", "")
    job.write_text(job.read_text().replace("batch_size: 5}", "batch_size: 5, "
                                           "options: {runtime: tensorrt}}"))  # fmt: skip
    with pytest.raises(ConfigError) as exc:
        check_runnable(load_job(job), job)
    assert f"{job}:2: pipeline.models[m].options: minilm: runtime must be one of" in str(exc.value)


@pytest.mark.parametrize(
    ("model", "extra", "where", "message"),
    [
        ("bw_test_models:SlowDouble", "", None, None),
        ("minilm", "", None, None),
        ("nosuch.mod:Model", "", ":2: pipeline.models[m].model",
         "cannot import 'nosuch.mod:Model': ModuleNotFoundError: No module named 'nosuch'"),
        ("bw_test_models:Missing", "", ":2: pipeline.models[m].model",
         "cannot import 'bw_test_models:Missing': bw_test_models has no attribute 'Missing'"),
        ("bw_test_models:NOT_CALLABLE", "", ":2: pipeline.models[m].model",
         "'bw_test_models:NOT_CALLABLE' is not callable (it is a int)"),
        ("nowhere.onnx", "", ":2: pipeline.models[m].model", "ONNX file not found: "),
        ("resnet50", "", ":2: pipeline.models[m].model", "'resnet50' is not a built-in"),
        ("bw_test_models:SlowShard", "", ":2: pipeline.models[m].options",
         "bw_test_models:SlowShard: got an unexpected keyword argument 'secs'"),
    ],
)  # fmt: skip
def test_models_are_checked_before_anything_starts(tmp_path, model, extra, where, message):
    job = job_with(tmp_path, model, extra)
    if model.endswith("SlowShard"):
        job.write_text(job.read_text().replace("batch_size: 5}", "batch_size: 5, "
                                               "options: {secs: 1}}"))  # fmt: skip
    if where is None:
        check_runnable(load_job(job), job)  # nothing to say
        return
    with pytest.raises(ConfigError) as exc:
        check_runnable(load_job(job), job)
    assert f"{job}{where}: {message}" in str(exc.value)


def test_functions_are_checked_with_their_line(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(
        "input:\n  kind: files\n  path: '*.txt'\n  reader: nosuch.io:load\n"
        "pipeline:\n  preprocess: bw_test_models:json_file\n"
        "  models: [{name: m, model: 'bw_test_models:SlowDouble'}]\n"
        "  postprocess: bw_test_models:NOT_CALLABLE\noutput: {path: out}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"job\.yaml:4: input\.reader: cannot import "
        r"'nosuch\.io:load': ModuleNotFoundError",
    ):
        check_runnable(load_job(job), job)
    job.write_text(job.read_text().replace("nosuch.io:load", "bw_test_models:json_file"))
    with pytest.raises(
        ConfigError,
        match=r"job\.yaml:8: pipeline\.postprocess: "
        r"'bw_test_models:NOT_CALLABLE' is not callable",
    ):
        check_runnable(load_job(job), job)


def test_user_modules_beside_the_job_file_are_found(tmp_path):
    (tmp_path / "mine.py").write_text("class M:\n    def __call__(self, b):\n        return b\n")
    job = job_with(tmp_path, "mine:M")
    check_runnable(load_job(job), job)


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("lease_s: .inf", "lease_s"),
        ("lease_s: 0.5", "lease_s"),
        ("lease_s: 100000", "lease_s"),
        ("max_attempts: 1000", "max_attempts"),
        ("workers: {count: 5000}", "workers.count"),
        ("workers: {count: 2, cpus: .nan}", "workers.cpus"),
        ("shards: {records: 2000000}", "shards.records"),
        ("shards: {bytes: 4294967296}", "shards.bytes"),
    ],
)
def test_a_job_cannot_ask_for_more_than_the_documented_limits(tmp_path, line, field):
    job = write_job(tmp_path, 3, "bw_test_models:SlowDouble", line + "\n")
    with pytest.raises(ConfigError, match=rf"job\.yaml:4: {field}"):
        load_job(job)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [("batch_size: 5", "batch_size: 100000", "batch_size"),
     ("batch_size: 5", "batch_size: 5, workers: 100", "workers"),
     ("}]}", "}], queue_batches: 5000}", "queue_batches"),
     ("}]}", "}], prefetch_shards: 100}", "prefetch_shards")],
)  # fmt: skip
def test_pipeline_limits(tmp_path, old, new, field):
    job = write_job(tmp_path, 3, "bw_test_models:SlowDouble", "")
    job.write_text(job.read_text().replace(old, new))
    with pytest.raises(ConfigError, match=rf"job\.yaml:2: pipeline\.\S*{field}"):
        load_job(job)
