"""Apps files: validation errors name the file, the field and the line."""

from __future__ import annotations

import json

import pytest

from batchwise.config.apps import AppSpec, load_workload
from batchwise.errors import ConfigError
from utils import EXAMPLES_DIR, write


def test_example_table1_loads(vgg19, prices_fc, table1_apps):
    wl = load_workload(EXAMPLES_DIR / "vgg19-table1.yaml")
    assert list(wl.apps) == table1_apps
    assert wl.profile == vgg19
    assert wl.prices == prices_fc
    assert wl.prices_ref == "alibaba-fc-2023"


def test_negative_slo_names_file_field_and_line(tmp_path):
    p = write(
        tmp_path / "bad-slo.yaml",
        "model: VGG19\napps:\n  - name: a\n    slo: -0.5\n    rate: 1\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_workload(p)
    msg = str(exc.value)
    assert "bad-slo.yaml" in msg
    assert "apps.0.slo" in msg
    assert f"{p}:4: apps.0.slo:" in msg  # slo is on line 4
    assert "(got -0.5)" in msg


def test_missing_model_field(tmp_path):
    p = write(tmp_path / "nomodel.yaml", "apps:\n  - {name: a, slo: 0.5, rate: 1}\n")
    with pytest.raises(ConfigError) as exc:
        load_workload(p)
    assert str(exc.value) == f"{p}: model: required field is missing"


def test_unknown_model_lists_known_models(tmp_path):
    p = write(tmp_path / "unk.yaml", "apps:\n  - {name: a, slo: 0.5, rate: 1}\nmodel: ResNet\n")
    with pytest.raises(ConfigError) as exc:
        load_workload(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}:3: model: unknown model 'ResNet'")
    for known in ("VGG19", "Bert", "GPT-2", "VideoMAE"):
        assert known in msg


def test_model_lookup_is_case_insensitive(tmp_path, vgg19):
    p = write(tmp_path / "lower.yaml", "model: vgg19\napps:\n  - {name: a, slo: 0.5, rate: 1}\n")
    assert load_workload(p).profile == vgg19


def test_duplicate_app_names(tmp_path):
    p = write(
        tmp_path / "dup.yaml",
        "model: VGG19\napps:\n  - {name: a, slo: 0.5, rate: 1}\n  - {name: a, slo: 0.6, rate: 2}\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_workload(p)
    msg = str(exc.value)
    assert f"{p}:3: apps:" in msg
    assert "'a' appears more than once" in msg


def test_invalid_yaml_names_the_line(tmp_path):
    p = write(
        tmp_path / "syntax.yaml",
        "model: VGG19\napps:\n  - {name: a, slo: 0.5, rate: 1\n  - {name: b, slo: 0.6, rate: 2}\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_workload(p)
    assert str(exc.value).startswith(f"{p}:4: invalid YAML:")


def test_unknown_fields_are_rejected(tmp_path):
    p = write(
        tmp_path / "extra.yaml",
        "model: VGG19\napps:\n  - {name: a, slo: 0.5, rate: 1, latency: 3}\n",
    )
    with pytest.raises(ConfigError, match=r"extra\.yaml:3: apps\.0\.latency: Extra inputs"):
        load_workload(p)


def test_empty_apps_list_and_empty_file(tmp_path):
    with pytest.raises(ConfigError, match="apps"):
        load_workload(write(tmp_path / "none.yaml", "model: VGG19\napps: []\n"))
    with pytest.raises(ConfigError, match="file is empty"):
        load_workload(write(tmp_path / "empty.yaml", ""))


def test_json_apps_file_works(tmp_path, bert, prices_paper):
    doc = {
        "model": "Bert",
        "prices": "paper-eq6",
        "apps": [{"name": "x", "slo": 0.4, "rate": 2.5}, {"name": "y", "slo": 0.9, "rate": 1}],
    }
    wl = load_workload(write(tmp_path / "apps.json", json.dumps(doc, indent=2)))
    assert wl.apps == (AppSpec(name="x", slo=0.4, rate=2.5), AppSpec(name="y", slo=0.9, rate=1.0))
    assert wl.profile == bert
    assert wl.prices == prices_paper


def test_unknown_price_book_in_apps_file(tmp_path):
    p = write(
        tmp_path / "p.yaml", "model: VGG19\nprices: nope\napps:\n  - {name: a, slo: 0.5, rate: 1}\n"
    )
    with pytest.raises(ConfigError, match="'nope' is neither a built-in price book") as exc:
        load_workload(p)
    # The message points at the apps file line that named the price book.
    assert str(exc.value).startswith(f"{p}:2: prices:")


def test_relative_price_and_profile_files_resolve_next_to_the_apps_file(tmp_path, vgg19):
    sub = tmp_path / "cfg"
    sub.mkdir()
    write(sub / "book.yaml", "name: mine\nvcpu_per_s: 1.0e-5\ngpu_memory_per_gb_s: 2.0e-5\n")
    profiles = {"models": {"Tiny": {"cpu": vgg19.cpu.model_dump()}}}
    write(sub / "models.json", json.dumps(profiles))
    p = write(
        sub / "apps.yaml",
        "model: Tiny\nprofiles: models.json\nprices: book.yaml\n"
        "apps:\n  - {name: a, slo: 0.5, rate: 1}\n",
    )
    wl = load_workload(p)
    assert wl.prices.name == "mine"
    assert wl.profile.name == "Tiny" and wl.profile.cpu == vgg19.cpu
    assert wl.profiles_ref == str(sub / "models.json")
