"""The SM-share GPU function kind (``gpu-sm``): its latency law, its price, who sells it,
what a plan with it looks like, and that plans using it verify, simulate and refuse
tampering with the field named."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from pydantic import ValidationError

from batchwise.config.apps import AppSpec
from batchwise.config.plan import FunctionSpec, Plan
from batchwise.config.prices import load_prices
from batchwise.config.profiles import builtin_profiles
from batchwise.errors import ConfigError
from batchwise.perf.functions import Function
from batchwise.perf.kinds import KINDS, KindError
from batchwise.perf.latency import gpu_full, gpu_sm_device, sm_saturation
from batchwise.planner import plan
from batchwise.planner.verify import verify_plan
from utils import cli_exit

SM = KINDS["gpu-sm"]
BOOK = load_prices("alibaba-fc-2023-sm")
VGG = builtin_profiles()["VGG19"]
APPS = [AppSpec(name=f"a{i}", slo=round(0.3 + 0.1 * i, 1), rate=r)
        for i, r in enumerate([2, 8, 1, 4, 12, 0.5, 6, 3])]  # fmt: skip


def test_a_batch_runs_at_full_speed_until_its_share_is_below_what_it_keeps_busy():
    gpu = VGG.gpu
    sigma = float(sm_saturation(gpu, 8))
    full = gpu.gpu_share * float(gpu_full(gpu, 8))
    assert float(gpu_sm_device(gpu, 8, 1.0)) == pytest.approx(full)
    assert float(gpu_sm_device(gpu, 8, sigma)) == pytest.approx(full)
    assert float(gpu_sm_device(gpu, 8, sigma / 2)) == pytest.approx(2 * full)
    shares = np.linspace(0.05, 1.0, 20)
    lat = [float(gpu_sm_device(gpu, 8, s)) for s in shares]
    assert all(a >= b for a, b in itertools.pairwise(lat))  # more SMs never slower


def test_saturation_grows_with_the_batch_and_a_profile_may_set_it():
    gpu = VGG.gpu
    assert float(sm_saturation(gpu, 1)) < float(sm_saturation(gpu, 32)) <= 1.0
    own = gpu.model_copy(update={"sm_saturation": 0.5, "sm_saturation_growth": 0.0})
    assert float(sm_saturation(own, 1)) == float(sm_saturation(own, 32)) == 0.5


def test_only_books_that_price_sms_sell_the_kind():
    assert list(SM.configs(VGG, load_prices(None))) == []
    spec = FunctionSpec(kind="gpu-sm", vcpu=0.6667, memory_gb=1.0, gpu_memory_gb=2,
                        sm_share=0.2, sm_limit=0.4)  # fmt: skip
    with pytest.raises(KindError, match="sells no SM-share") as exc:
        SM.check(spec, 4, VGG, load_prices(None))
    assert exc.value.field == ("function", "kind")


def test_the_whole_device_costs_what_all_its_memory_slices_cost():
    whole_sm = Function("gpu-sm", 8.0, 1.0, 24, 1.0, 1.0)
    whole_mem = Function("gpu", 8.0, 1.0, 24)
    assert SM.unit_price(whole_sm, BOOK) == pytest.approx(KINDS["gpu"].unit_price(whole_mem, BOOK))


def test_configs_use_the_least_memory_a_batch_needs_and_the_books_shares():
    configs = list(SM.configs(VGG, BOOK))
    shares = sorted({fn.sm_share for fn, _ in configs})
    assert shares == pytest.approx([0.1 * i for i in range(1, 11)])
    for fn, b in configs:
        assert fn.gpu_memory_gb == max(BOOK.gpu_memory_gb_min, VGG.gpu.min_memory_gb(b))
        assert fn.sm_limit == pytest.approx(min(1.0, 2 * fn.sm_share))


def test_the_planner_picks_an_sm_share_when_it_is_cheaper_and_the_plan_verifies(tmp_path):
    with_sm = plan(APPS, VGG, BOOK)
    without = plan(APPS, VGG, load_prices(None))
    kinds = {g.function.kind for g in with_sm.groups}
    assert "gpu-sm" in kinds
    assert with_sm.cost_per_request < without.cost_per_request
    back = Plan.model_validate_json(with_sm.model_dump_json())
    checked = verify_plan(back, VGG, BOOK)
    assert checked.cost_per_request == pytest.approx(with_sm.cost_per_request)
    g = next(g for g in with_sm.groups if g.function.kind == "gpu-sm")
    assert g.latency_max <= min(g.slos.values())


def _sm_plan_file(tmp_path) -> tuple[dict, str, int]:
    p = plan(APPS, VGG, BOOK)
    data = json.loads(p.model_dump_json())
    i = next(i for i, g in enumerate(data["groups"]) if g["function"]["kind"] == "gpu-sm")
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    return data, str(path), i


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sm_share": 0.15, "sm_limit": 0.3}, "sm_share"),
        ({"sm_limit": 1.0}, "sm_limit"),
        ({"gpu_memory_gb": 30}, "gpu_memory_gb"),
    ],
)
def test_a_tampered_sm_function_is_refused_naming_the_field(tmp_path, change, field):
    data, _, i = _sm_plan_file(tmp_path)
    fn = data["groups"][i]["function"]
    fn.update(change)
    if fn["sm_limit"] < fn["sm_share"]:
        fn["sm_limit"] = fn["sm_share"]
    with pytest.raises(ConfigError, match=field):
        verify_plan(Plan.model_validate(data), VGG, BOOK)


def test_plan_specs_need_both_shares_on_gpu_sm_only():
    with pytest.raises(ValidationError, match="sm_share and sm_limit"):
        FunctionSpec(kind="gpu-sm", vcpu=1.0, memory_gb=1.0, gpu_memory_gb=2)
    with pytest.raises(ValidationError, match="sm_share and sm_limit"):
        FunctionSpec(kind="cpu", vcpu=1.0, memory_gb=1.0, sm_share=0.2, sm_limit=0.2)
    with pytest.raises(ValidationError, match="at least sm_share"):
        FunctionSpec(kind="gpu-sm", vcpu=1.0, memory_gb=1.0, gpu_memory_gb=2, sm_share=0.4,
                     sm_limit=0.2)  # fmt: skip


def test_a_plan_with_sm_functions_simulates(tmp_path, capsys):
    _, path, _ = _sm_plan_file(tmp_path)
    argv = ["simulate", path, "--trace", "poisson", "--duration", "60", "--json"]
    assert cli_exit(argv) == 0
    static = json.loads(capsys.readouterr().out)["static"]
    assert static["requests"] > 1000
    assert static["slo_violation_rate"] < 0.01
    # the simulated cost is the plan's prediction, within Poisson noise over 60 s
    assert static["cost_per_request"] == pytest.approx(static["predicted_cost_per_request"],
                                                       rel=0.1)  # fmt: skip
