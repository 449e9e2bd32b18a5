"""JSON Schemas of every file kind, generated from the pydantic models that validate them.

Why generated: a hand-written schema drifts from the code; this one is the code's
own contract, for editors (YAML language servers), CI validators and docs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from batchwise.config.apps import AppsFile
from batchwise.config.job import JobSpec
from batchwise.config.plan import Plan
from batchwise.config.prices import PriceBook
from batchwise.config.profiles import ProfileSet

MODELS: dict[str, type[BaseModel]] = {
    "apps": AppsFile,
    "profile": ProfileSet,
    "prices": PriceBook,
    "plan": Plan,
    "job": JobSpec,
}
"""File kind → the model that validates it."""


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one file kind."""
    schema = MODELS[kind].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", kind)
    return schema
