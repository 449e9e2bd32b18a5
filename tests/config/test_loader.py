"""Reading YAML/JSON files and turning validation errors into file:line: field messages."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from batchwise.config.loader import load_model, read_document
from batchwise.errors import ConfigError
from utils import write


class Knob(BaseModel):
    name: str
    size_s: float = Field(gt=0)
    tags: list[int] = []


def test_read_yaml_returns_data_and_line_map(tmp_path):
    p = write(tmp_path / "k.yaml", "name: a\nsize_s: 2\ntags:\n  - 1\n  - 2\n")
    data, lines = read_document(p)
    assert data == {"name": "a", "size_s": 2, "tags": [1, 2]}
    assert lines[("name",)] == 1
    assert lines[("size_s",)] == 2
    assert lines[("tags", 1)] == 5


def test_json_gets_line_numbers_too(tmp_path):
    p = write(tmp_path / "k.json", '{\n  "name": "a",\n  "size_s": -1\n}\n')
    with pytest.raises(ConfigError) as exc:
        load_model(Knob, p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}:3: size_s: ")
    assert "greater than 0" in msg and "(got -1)" in msg


def test_several_problems_make_one_line_that_names_every_field(tmp_path):
    p = write(tmp_path / "k.yaml", "size_s: 0\ntags: [1, x]\n")
    with pytest.raises(ConfigError) as exc:
        load_model(Knob, p)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: name: required field is missing; 2 more problem(s): ")
    assert msg.endswith("size_s, tags.1")


def test_invalid_json_names_the_line(tmp_path):
    p = write(tmp_path / "k.json", '{\n  "name": "a",\n  "size_s": 1,\n}\n')
    with pytest.raises(ConfigError, match=r"k\.json:4: invalid JSON"):
        read_document(p)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        read_document(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="file is empty"):
        load_model(Knob, write(tmp_path / "empty.yaml", "# nothing\n"))
