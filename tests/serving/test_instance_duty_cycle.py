"""The duty-cycle fallback: an instance's reported service time includes its rest.

The rest delays the answer, so it is what the batch's requests wait and what the
gateway's service model, admission and billing must see (as a cgroup's throttled
periods are inside a batch's wall time)."""

from __future__ import annotations

import time

from batchwise.serving.instance import Instance, InstanceConfig


def sleeper(vcpu: float, mechanism: str) -> Instance:
    cfg = InstanceConfig("sleep", {"base_s": 0.02, "per_item_s": 0.0}, vcpu=vcpu,
                         threads=1, mechanism=mechanism)  # fmt: skip
    return Instance(cfg)


def test_a_duty_cycled_batch_reports_its_rest_with_its_compute():
    inst = sleeper(0.5, "duty-cycle")
    t0 = time.perf_counter()
    out, busy = inst.run(["a", "b"])
    wall = time.perf_counter() - t0
    assert len(out) == 2
    # 20 ms of work at 0.5 vCPU: 20 ms of rest follows, before the answer.
    assert busy >= 0.039
    assert busy <= wall + 1e-6


def test_without_a_duty_cycle_the_service_time_is_the_compute():
    inst = sleeper(0.5, "off")
    _, busy = inst.run(["a"])
    assert 0.019 <= busy < 0.035
