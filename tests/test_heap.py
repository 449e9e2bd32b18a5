"""heap.settle: what is alive at the end of start-up leaves the collector's walks.

Why it matters (batchwise/heap.py): full collections over a model's objects paused an
instance ~95 ms mid-batch and the gateway ~60 ms under overload."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from batchwise import heap
from batchwise.serving.instance import Instance, InstanceConfig


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the suite runs with an ordinary collector


def _tracked(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


def test_objects_alive_at_settle_are_frozen_and_later_ones_are_collected_as_usual():
    kept = [[1], {"a": 2}]
    assert _tracked(kept)
    frozen = heap.settle()
    # At most that many stay frozen: a frozen object freed since (another thread's, say)
    # leaves the permanent generation (CI once saw 845745 then 845743).
    assert 0 < gc.get_freeze_count() <= frozen
    assert not _tracked(kept)  # in the permanent generation: no collection walks it
    later = [[3]]
    assert _tracked(later)
    cycle: list = []
    cycle.append(cycle)  # garbage only the collector can free, made after the freeze
    del cycle
    assert gc.collect() >= 1


def test_settle_collects_garbage_cycles_before_it_freezes():
    cycle: list = []
    cycle.append(cycle)
    del cycle
    heap.settle()
    assert gc.collect() == 0  # the cycle was freed by settle's collection, not frozen


def test_an_instance_settles_its_heap_once_warm():
    inst = Instance(InstanceConfig("sleep", {"base_s": 0.0, "per_item_s": 0.0}, vcpu=1.0,
                                   threads=1))  # fmt: skip
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    inst.warm_up()
    assert gc.get_freeze_count() > 0
    assert not _tracked(inst.model)
