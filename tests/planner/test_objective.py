"""The expected-cost objective: never dearer in expectation than the full-batch plan."""

from __future__ import annotations

import pytest

from batchwise.config.apps import AppSpec
from batchwise.planner import PlannerOptions, plan
from utils import cli_exit

APPS = [AppSpec(name="a", slo=0.5, rate=5), AppSpec(name="b", slo=0.8, rate=10),
        AppSpec(name="c", slo=1.0, rate=20)]  # fmt: skip


@pytest.mark.parametrize("algorithm", ["dp", "harmony", "exact"])
def test_expected_objective_lowers_or_keeps_the_expected_cost(vgg19, prices_fc, algorithm):
    full = plan(APPS, vgg19, prices_fc, algorithm)
    exp = plan(APPS, vgg19, prices_fc, algorithm, PlannerOptions(objective="expected"))
    assert exp.expected_cost_per_request <= full.expected_cost_per_request * (1 + 1e-9)
    assert [g.apps for g in exp.groups] == [g.apps for g in full.groups]  # same grouping
    if algorithm != "harmony":  # its provisioning is heuristic; these pick each group's best
        assert exp.cost_per_request >= full.cost_per_request * (1 - 1e-9)


def test_objective_option_on_the_cli(capsys):
    from utils import EXAMPLES_DIR

    apps = str(EXAMPLES_DIR / "vgg19-table1.yaml")
    for objective in ("expected", "full-batch"):
        assert cli_exit(["plan", apps, "--objective", objective, "--json"]) == 0
    capsys.readouterr()
    assert cli_exit(["plan", apps, "--objective", "cheapest"]) == 2
    assert "--objective" in capsys.readouterr().err
