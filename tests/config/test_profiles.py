"""Model profiles: the built-in set, the authors' model.json format and our own schema."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from batchwise.config.profiles import (
    BUILTIN_PROFILE_SET,
    CpuProfile,
    get_profile,
    load_profiles,
)
from batchwise.errors import ConfigError
from utils import write


def _authors_model_json() -> dict:
    text = resources.files("batchwise.config").joinpath("data/harmonybatch_models.json")
    return json.loads(text.read_text())


def test_builtin_set_has_the_four_models(profiles):
    assert set(profiles) == {"VGG19", "Bert", "GPT-2", "VideoMAE"}
    assert load_profiles(None) == profiles == load_profiles(BUILTIN_PROFILE_SET)
    for p in profiles.values():
        assert p.cpu is not None and p.cpu.max_batch == 4
        assert p.gpu is not None and p.gpu.max_batch == 32


def test_builtin_values_match_the_authors_file(vgg19, bert):
    assert vgg19.cpu.avg[0] == (1.8260695578676214, 0.5283726420022545, 0.18015427168547402)
    assert vgg19.cpu.memory_per_item_mb == 36.57142857
    assert vgg19.cpu.memory_base_mb == 807.6190476
    assert vgg19.gpu.per_item_s == 0.001679844365532822
    assert vgg19.gpu.memory_steps == [0]
    assert (vgg19.gpu.gpu_share, vgg19.gpu.host_share) == (1.0, 0.0)
    assert (bert.gpu.gpu_share, bert.gpu.host_share) == (0.43, 0.57)
    assert bert.gpu.host_memory_mb == 512
    assert vgg19.gpu.slice_s == 0.002 and vgg19.gpu.total_memory_gb == 24


def test_harmonybatch_model_json_in_a_temp_file_loads(tmp_path, profiles):
    data = _authors_model_json()
    p = write(tmp_path / "model.json", json.dumps({"VGG19": data["VGG19"], "Bert": data["Bert"]}))
    got = load_profiles(p)
    assert set(got) == {"VGG19", "Bert"}
    assert got["VGG19"] == profiles["VGG19"]
    assert got["Bert"] == profiles["Bert"]


def test_broken_harmonybatch_model_json_is_a_config_error(tmp_path):
    p = write(tmp_path / "model.json", json.dumps({"X": {"CPU": {"avg": {}}}}))
    with pytest.raises(ConfigError, match=r"not a valid HarmonyBatch model\.json"):
        load_profiles(p)


OWN_FORMAT = """\
models:
  Toy:
    cpu:
      avg: [[1.0, 0.5, 0.1], [2.0, 0.5, 0.2]]
      max: [[1.2, 0.5, 0.15], [2.4, 0.5, 0.25]]
      memory_base_mb: 700
    gpu:
      per_item_s: 0.002
      base_s: 0.003
      memory_steps: [8]
      max_batch: 16
"""


def test_own_profile_format_loads(tmp_path):
    got = load_profiles(write(tmp_path / "models.yaml", OWN_FORMAT))
    toy = got["Toy"]
    assert toy.name == "Toy"  # taken from the key
    assert toy.cpu.max_batch == 2
    assert toy.cpu.memory_per_item_mb == 0.0  # default
    assert toy.gpu.max_batch == 16
    assert toy.gpu.min_memory_gb(8) == 1 and toy.gpu.min_memory_gb(9) == 2
    assert toy.gpu.max_latency_overhead == 1.2 and toy.gpu.slice_s == 0.002


def test_own_format_errors_name_field_and_line(tmp_path):
    bad = OWN_FORMAT.replace("max: [[1.2, 0.5, 0.15], [2.4, 0.5, 0.25]]", "max: [[1.2, 0.5, 0.15]]")
    p = write(tmp_path / "models.yaml", bad)
    with pytest.raises(ConfigError) as exc:
        load_profiles(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}:4: models.Toy.cpu:")
    assert "avg has 2 batch sizes but max has 1" in msg
    p = write(tmp_path / "neg.yaml", OWN_FORMAT.replace("0.5, 0.1]", "-0.5, 0.1]"))
    with pytest.raises(ConfigError, match=r"neg\.yaml:4: models\.Toy\.cpu\.avg\.0\.1:"):
        load_profiles(p)


def test_a_model_needs_some_hardware(tmp_path):
    p = write(tmp_path / "m.yaml", "models:\n  Empty: {}\n")
    with pytest.raises(ConfigError, match="needs a 'cpu' or a 'gpu' profile"):
        load_profiles(p)


def test_unknown_profile_set_name():
    with pytest.raises(ConfigError, match="neither a built-in profile set"):
        load_profiles("no-such-set")


def test_get_profile(profiles):
    assert get_profile(profiles, "gpt-2") is profiles["GPT-2"]
    with pytest.raises(ConfigError, match=r"^where: model: unknown model 'X'; known models: "):
        get_profile(profiles, "X", "where")


def test_cpu_profile_rejects_non_positive_beta():
    with pytest.raises(ValueError):
        CpuProfile(avg=[(1.0, 0.0, 0.1)], max=[(1.0, 0.5, 0.1)], memory_base_mb=1)
