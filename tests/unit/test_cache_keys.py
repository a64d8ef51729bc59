"""Stage cache keys: a setting changes its own stage's key and every downstream key, and nothing upstream."""

from __future__ import annotations

import pytest

from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.stages import STAGES
from trainpipe.runner.keys import stage_keys

COMPUTE_STAGES = STAGES.computing

BASE = PipelineSpec()


def _changed(spec: PipelineSpec, data: str = "d0", code: str = "c0") -> list[Stage]:
    a = stage_keys(BASE, "d0", "c0")
    b = stage_keys(spec, data, code)
    return [s for s in COMPUTE_STAGES if a[s] != b[s]]


def _with(section: str, **values) -> PipelineSpec:
    wire = BASE.to_wire()
    wire[section] = {**wire[section], **values}
    return PipelineSpec.model_validate(wire)


@pytest.mark.parametrize(
    "spec,first",
    [
        (_with("ranking", folds=5), Stage.RANK),
        (_with("targets", topN=2), Stage.RANK),
        (_with("data", symbols=["AAPL"]), Stage.RANK),
        (_with("features", topM=10), Stage.SELECT),
        (_with("selection", minSupport=3), Stage.SELECT),
        (_with("routing", minSampleSizeCs=10), Stage.PLAN),
        (_with("training", families=["lightgbm"]), Stage.PLAN),
        (_with("training", holdoutFraction=0.3), Stage.RANK),  # the cut is fixed before ranking
        (_with("training", costBps=20), Stage.CPU),  # the backtests' costs: every model's metrics.json, no model upstream
    ],
)
def test_setting_reruns_its_stage_and_downstream_only(spec, first):
    assert _changed(spec) == list(COMPUTE_STAGES[COMPUTE_STAGES.index(first):])


def test_same_inputs_same_keys():
    assert _changed(PipelineSpec()) == []


def test_data_or_code_change_reruns_everything():
    assert _changed(BASE, data="d1") == list(COMPUTE_STAGES)
    assert _changed(BASE, code="c1") == list(COMPUTE_STAGES)


def test_a_run_id_is_an_input_of_the_plan_only():
    # The plan records the run id: rank and select carry over between runs, the plan and training do not.
    a = stage_keys(BASE, "d0", "c0")
    b = stage_keys(BASE, "d0", "c0", run_id="r0123456789")
    assert [s for s in COMPUTE_STAGES if a[s] != b[s]] == list(COMPUTE_STAGES[COMPUTE_STAGES.index(Stage.PLAN):])


def test_the_previous_run_is_an_input_of_the_plan_not_of_select():
    # Select's comparison with the previous run is made again on a cached selection; routing, which reads it, is replanned.
    a = stage_keys(BASE, "d0", "c0")
    b = stage_keys(BASE, "d0", "c0", previous_run="/artifacts/ns/demo/r-good")
    c = stage_keys(BASE, "d0", "c0", previous_run="/artifacts/ns/demo/r-older")
    plan_on = list(COMPUTE_STAGES[COMPUTE_STAGES.index(Stage.PLAN):])
    assert [s for s in COMPUTE_STAGES if a[s] != b[s]] == plan_on and [s for s in COMPUTE_STAGES if b[s] != c[s]] == plan_on
