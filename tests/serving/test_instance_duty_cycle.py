"""The duty-cycle fallback: an instance's reported service time includes its rest.

The rest delays the answer, so it is what the batch's requests wait and what the
gateway's service model, admission and billing must see (as a cgroup's throttled
periods are inside a batch's wall time)."""

from __future__ import annotations

import time

from batchwise.serving.instance import Instance, InstanceConfig


class Spin:
    """A model that burns ``cpu_s`` of CPU per batch on this thread."""

    def __init__(self, cpu_s: float) -> None:
        self.cpu_s = cpu_s

    def __call__(self, records: list) -> list:
        t0 = time.process_time()
        while time.process_time() - t0 < self.cpu_s:
            pass
        return list(records)


def instance(model: object, vcpu: float, mechanism: str) -> Instance:
    inst = Instance(InstanceConfig("sleep", {"base_s": 0.0, "per_item_s": 0.0}, vcpu=vcpu,
                                   threads=1, mechanism=mechanism))  # fmt: skip
    inst.model = model
    return inst


def test_a_duty_cycled_batch_reports_its_rest_with_its_compute():
    inst = instance(Spin(0.02), 0.5, "duty-cycle")
    t0 = time.perf_counter()
    out, busy = inst.run(["a", "b"])
    wall = time.perf_counter() - t0
    assert out == ["a", "b"]
    # 20 ms of CPU at 0.5 vCPU: 40 ms in all, the rest before the answer.
    assert busy >= 0.039
    assert busy <= wall + 1e-6


def test_a_batch_that_waits_uses_no_quota_and_rests_nothing():
    """As under a cgroup: a sleep is not CPU, so a 0.1-vCPU instance is not slowed 10x."""
    inst = instance(lambda recs: (time.sleep(0.02), list(recs))[1], 0.1, "duty-cycle")
    _, busy = inst.run(["a"])
    assert 0.019 <= busy < 0.05


def test_without_a_duty_cycle_the_service_time_is_the_compute():
    inst = instance(Spin(0.02), 0.5, "off")
    _, busy = inst.run(["a"])
    assert 0.019 <= busy < 0.035
