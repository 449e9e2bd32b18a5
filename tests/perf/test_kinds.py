"""The function-kind registry: one entry per kind, round trips through plans."""

from __future__ import annotations

import pytest

from batchwise.config.plan import FunctionSpec
from batchwise.config.prices import load_prices
from batchwise.config.profiles import builtin_profiles
from batchwise.perf.kinds import KINDS, KindError, kind_of
from batchwise.planner.table import build_table


def test_every_kind_round_trips_through_a_plan_spec_and_its_check():
    profile, prices = builtin_profiles()["VGG19"], load_prices("alibaba-fc-2023-sm")
    for name, kind in KINDS.items():
        fn, b = next(iter(kind.configs(profile, prices)))
        assert fn.kind == name
        spec = FunctionSpec(**kind.spec_fields(fn))
        back = kind.from_spec(spec)  # plans store vCPUs to 4 decimals (GPU: m / 3)
        assert back.kind == fn.kind and back.vcpu == pytest.approx(fn.vcpu, abs=1e-4)
        assert (back.memory_gb, back.gpu_memory_gb) == (fn.memory_gb, fn.gpu_memory_gb)
        assert (back.sm_share, back.sm_limit) == (fn.sm_share, fn.sm_limit)
        assert kind.check(spec, b, profile, prices) == fn
        assert fn.describe() == kind.describe(fn) and kind.size(fn) > 0


def test_the_table_holds_exactly_the_configs_of_the_kinds_asked_for():
    profile, prices = builtin_profiles()["VGG19"], load_prices("alibaba-fc-2023-sm")
    for kinds in (("cpu",), ("gpu",), ("gpu-sm",), ("cpu", "gpu", "gpu-sm")):
        table = build_table(profile, prices, kinds)
        n = sum(len(list(KINDS[k].configs(profile, prices))) for k in kinds)
        assert len(table) == n and {f.kind for f in table.functions} == set(kinds)


def test_a_check_names_the_field_it_refuses():
    profile, prices = builtin_profiles()["VGG19"], load_prices(None)
    spec = FunctionSpec(kind="cpu", vcpu=0.333, memory_gb=2.0)
    with pytest.raises(KindError, match="not a size price book") as exc:
        KINDS["cpu"].check(spec, 1, profile, prices)
    assert exc.value.field == ("function", "vcpu")


def test_unknown_kinds_list_the_known_ones():
    with pytest.raises(ValueError, match="known: cpu, gpu"):
        kind_of("tpu")
