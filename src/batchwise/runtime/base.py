"""The runner interface: ``load()``, ``predict(batch)`` and a named, typed tensor schema.

Why a schema: the serving gateway answers the Open Inference Protocol's model
metadata (``GET /v2/models/{app}``: inputs and outputs with names, datatypes and
shapes) from it, and checks request tensors against it before they reach a model;
batch jobs ignore it. Datatypes use the protocol's names (``BYTES``, ``FP32``, ...);
``-1`` in a shape is a variable dimension (the batch, always first).

Why ``load()`` apart from the constructor: the constructor only takes options (cheap,
so a master can check them before starting anything); ``load()`` reads weights and
starts runtimes, in the process that will run the model, once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. Invariant: ``shape[0] == -1`` (the batch dimension)."""

    name: str
    datatype: str  # Open Inference Protocol datatype: BYTES, FP32, INT64, ...
    shape: tuple[int, ...]  # -1: variable

    def to_dict(self) -> dict[str, Any]:
        """The protocol's metadata shape: ``{"name", "datatype", "shape"}``."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Runner(ABC):
    """A model: ``predict`` maps a list of records to a list of outputs of the same length."""

    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    def __init__(self) -> None:
        self._loaded = False

    @abstractmethod
    def _load(self) -> None:
        """Read weights, start the runtime (called once, by :meth:`load`)."""

    @abstractmethod
    def predict(self, batch: list[Any]) -> list[Any]:
        """Outputs for ``batch``, one per record, in order (the model must be loaded)."""

    def example(self) -> Any | None:
        """One record the model accepts (warm-up batches, profiling); None: it cannot say."""
        return None

    def load(self) -> Runner:
        """Load once (idempotent); returns ``self`` so ``Runner(...).load()`` reads well."""
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def __call__(self, batch: list[Any]) -> list[Any]:
        """A batch job's stage: load on first use, then predict; lengths must match."""
        out = self.load().predict(batch)
        if len(out) != len(batch):
            raise RuntimeError(f"{type(self).__name__} returned {len(out)} outputs for "
                               f"{len(batch)} records")  # fmt: skip
        return out
