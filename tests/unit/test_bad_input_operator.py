"""Valid but unusable specs: the pipeline ends Stalled with a reason that names what to fix, and no training Job appears.

Two halves. The operator's pure `decide` (builders from test_operator_decide.py) for what it can tell
without running anything: a missing claim, no image, a spec the API server let through. The stage
commands on a tiny panel for what only the data can tell (an unknown family, symbols that are not
there, topN beyond the targets found): the exit code and termination message a rank pod leaves, which
`decide` then turns into the pipeline's Stalled condition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from panels import make_panel, write_panel
from test_operator_decide import (
    CONFIG,
    NOW,
    condition,
    created_jobs,
    done,
    job,
    plan_cm,
    pod,
    run,
    spec,
    stages_created,
    status_after,
    view,
)
from trainpipe.cli.main import main
from trainpipe.contract.exitcodes import ExitCode
from trainpipe.contract.names import Stage
from trainpipe.contract.stages import STAGES
from trainpipe.contract.status import PlanRef
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import decide
from trainpipe_operator.observed import Observed, parse_pipeline


def training_jobs(d) -> list[str]:
    return [name for name, m in created_jobs(d).items() if m["metadata"]["labels"]["trainpipe.io/stage"] in set(STAGES.training)]


def stalled(d) -> tuple[str, str, str]:
    c = next(c for c in d.status.conditions if c.type == "Stalled")
    return c.status, c.reason, c.message


# ---- what the operator sees before any Job: claims and images ---------------------------------------


@pytest.mark.parametrize(
    ("pipeline", "missing", "names"),
    [
        (spec(), ("bars",), ["PersistentVolumeClaim bars not found in namespace ns", "spec.data.volume.claimName"]),
        (spec(**{"artifacts.claimName": "models"}), ("models",), ["PersistentVolumeClaim models not found", "spec.artifacts.claimName"]),
        (spec(**{"artifacts.claimName": "models"}), ("bars", "models"), ["bars, models not found"]),
    ],
    ids=["data-claim", "artifacts-claim", "both-claims"],
)
def test_a_missing_claim_stalls_the_pipeline_before_any_job_naming_the_claim_and_the_field(pipeline, missing, names) -> None:
    d = run(view(pipeline), missing_claims=missing)
    assert not created_jobs(d) and not d.upsert
    status, reason, message = stalled(d)
    assert (status, reason) == ("True", "InvalidSpec") and condition(d, "Ready") == ("False", "InvalidSpec")
    for name in names:
        assert name in message and name in d.status.message


def test_a_stalled_missing_claim_goes_on_by_itself_once_the_claim_exists() -> None:
    first = run(view(), missing_claims=("bars",))
    assert stalled(first)[0] == "True"
    then = run(view(status=first.status))
    assert stages_created(then) == [("rank", "all")] and stalled(then)[0] == "False"


def test_no_cpu_image_anywhere_stalls_before_rank_naming_the_setting_and_the_flag() -> None:
    d = run(view(), config=OperatorConfig(gpu_image="jobs-gpu:1"))
    assert not created_jobs(d)
    status, reason, message = stalled(d)
    assert (status, reason) == ("True", "InvalidSpec") and "spec.images.cpu" in message and "--cpu-image" in message


def test_gpu_families_without_a_gpu_image_stall_after_cpu_training_naming_the_unit_count() -> None:
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    d = run(view(status=st), done(Stage.CPU, "lightgbm", n=4), done(Stage.CPU, "xgboost", n=4), plan=plan_cm(),
            config=OperatorConfig(cpu_image="jobs-cpu:1"))
    assert not created_jobs(d)
    status, reason, message = stalled(d)
    assert (status, reason) == ("True", "InvalidSpec")
    assert "the plan has 4 gpu units but there is no gpu image" in message and "--gpu-image" in message
    assert d.status.stages["gpu"].reason == "InvalidSpec" and d.status.stages["gpu"].outcome is None  # fixing the image continues the run


def test_a_missing_gpu_image_does_not_matter_when_the_plan_has_no_gpu_units() -> None:
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN).model_copy(update={"plan": PlanRef(digest="d" * 64, path="p", units={"lightgbm": 2})})
    d = run(view(status=st), done(Stage.CPU, "lightgbm", n=2), config=OperatorConfig(cpu_image="jobs-cpu:1"))
    assert stages_created(d) == [("report", "all")] and stalled(d)[0] == "False"


# ---- specs the API server let through (an older CRD, no CEL): parsed, refused with the field ---------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"selection": {"methods": ["lightgbm_gain", "lightgbm_gain", "catboost", "permutation"]}}, "spec.selection.methods"),
        ({"data": {"symbols": ["../../etc"]}}, "spec.data.symbols"),
        ({"targets": {"auto": False}}, "spec.targets"),
        ({"features": {"auto": False, "include": []}}, "spec.features"),
        ({"schedule": {"cron": "0 2 * * *", "timeZone": "Mars/Olympus"}}, "spec.schedule.timeZone"),
        ({"training": {"holdoutFraction": 0.9}}, "spec.training.holdoutFraction"),
        ({"colour": "red"}, "spec.colour"),
    ],
    ids=["duplicate-method", "dotdot-symbol", "targets-none", "features-none", "time-zone", "holdout", "unknown-field"],
)
def test_a_spec_the_model_refuses_stalls_naming_the_field_and_creates_nothing(raw: dict[str, Any], field: str) -> None:
    obj = {"metadata": {"name": "demo", "namespace": "ns", "uid": "u", "generation": 3},
           "spec": {"data": {"dir": "d", "volume": {"claimName": "bars"}}, **raw}}
    d = decide(parse_pipeline(obj), Observed(), CONFIG, NOW)
    assert not d.create and not d.upsert
    status, reason, message = stalled(d)
    assert (status, reason) == ("True", "InvalidSpec") and f"field '{field}" in message, message
    assert d.status.observed_generation == 3 and [e.reason for e in d.events] == ["InvalidSpec"]


# ---- what a rank or plan pod reports about the data: the run stalls, no training Job --------------------


@pytest.mark.parametrize(
    ("stage", "exit_code", "message"),
    [
        (Stage.RANK, ExitCode.INVALID_SPEC, "rank: INVALID_SPEC: unknown model family 'random_forest'; valid families: lightgbm, xgboost"),
        (Stage.RANK, ExitCode.BAD_DATA, "rank: BAD_DATA: /data/bars: no data for symbol(s) ZZZ; available: AAA, BBB. Fix data.symbols or add the missing data"),
        (Stage.RANK, ExitCode.BAD_DATA, "rank: BAD_DATA: /data/bars/symbol=B/B.parquet: column 'mom' is not numeric (type string, e.g. value 'n/a')"),
        (Stage.PLAN, ExitCode.EMPTY_PLAN, "plan: EMPTY_PLAN: routing left nothing to train: fwd_ret_1d: cs DISALLOWED; set training.allowEmptyPlan"),
    ],
    ids=["unknown-family", "no-such-symbol", "text-column", "empty-plan"],
)
def test_a_permanent_stage_failure_stalls_the_run_with_the_pods_message_and_no_training_job(stage: Stage, exit_code: ExitCode, message: str) -> None:
    before = {Stage.RANK: (), Stage.PLAN: (Stage.RANK, Stage.SELECT)}[stage]
    failed = job(stage, failed="PodFailurePolicy")
    d = run(view(status=status_after(*before, plan=False)), failed, pods=(pod(failed, "Failed", message, exit_code=int(exit_code)),))
    assert not training_jobs(d) and not created_jobs(d)
    status, reason, said = stalled(d)
    assert (status, reason) == ("True", "StageFailed")
    assert message in said and f"(exit {int(exit_code)})" in said and "trainpipe.io/retry" in said
    assert d.status.stages[stage.value].outcome == "Failed"


def test_rank_keeping_no_target_skips_select_and_the_plan_job_is_the_next_step() -> None:
    st = status_after(plan=False, selected=None)
    rank = done(Stage.RANK)
    d = run(view(status=st), rank, pods=(pod(rank, message=json.dumps({"selected": 0})),))
    assert stages_created(d) == [("plan", "all")] and d.status.stages["select"].outcome == "Succeeded"


# ---- the stage commands themselves, on a tiny panel ---------------------------------------------------


@pytest.fixture(scope="module")
def panel_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data")
    write_panel(make_panel(n_days=300), data)
    return data


def rank(tmp_path: Path, bars: Path, **spec_parts: Any) -> tuple[int, str]:
    base: dict[str, Any] = {"data": {"dir": str(bars), "minRowsPerSymbol": 100}, "targets": {"topN": 2}, "features": {"topM": 3},
                            "ranking": {"folds": 2, "maxRows": 1000}, "training": {"families": ["lightgbm"]}, "seed": 7,
                            "evidence": {"trainAnyway": True}}  # a 300-bar panel is too short to show its signal clears noise
    for section, value in spec_parts.items():
        base[section] = {**base.get(section, {}), **value}
    log = tmp_path / "termination-log"
    code = main(["rank", "--spec-json", json.dumps(base), "--output-dir", str(tmp_path / "out"), "--threads", "1", "--termination-log", str(log)])
    return code, log.read_text().strip()


@pytest.mark.parametrize(
    ("parts", "exit_code", "says"),
    [
        ({"training": {"families": ["random_forest"]}}, ExitCode.INVALID_SPEC, ["rank: INVALID_SPEC: unknown model family 'random_forest'", "valid families: lightgbm"]),
        ({"training": {"families": ["lightgbm", "LSTM", "tab-cnn", "no_such_net"]}}, ExitCode.INVALID_SPEC, ["unknown model family 'no_such_net'"]),
        ({"data": {"symbols": ["ZZZ"]}}, ExitCode.BAD_DATA, ["rank: BAD_DATA:", "no data for symbol(s) ZZZ; available: AAA, BBB, CCC", "Fix data.symbols"]),
        ({"data": {"symbols": ["AAA", "zzz"]}}, ExitCode.BAD_DATA, ["no data for symbol(s) zzz"]),
    ],
    ids=["unknown-family", "one-unknown-among-aliases", "no-symbol-found", "one-symbol-missing"],
)
def test_rank_refuses_an_unusable_spec_with_a_permanent_exit_code_naming_it(tmp_path: Path, panel_dir: Path, parts, exit_code, says) -> None:
    code, message = rank(tmp_path, panel_dir, **parts)
    assert code == exit_code, message
    for part in says:
        assert part in message
    assert not (tmp_path / "out" / "ranking").exists()


def test_a_data_dir_without_symbols_is_bad_data_naming_the_folder_and_the_layout(tmp_path: Path) -> None:
    empty = tmp_path / "bars"
    (empty / "interval=1d").mkdir(parents=True)
    code, message = rank(tmp_path, empty)
    assert code == ExitCode.BAD_DATA and f"{empty}/interval=1d: no data found; expected" in message


def test_top_n_beyond_the_targets_found_keeps_every_usable_target_and_says_how_many(tmp_path: Path, panel_dir: Path) -> None:
    # topN is a ceiling ("at most N go on"), not a demand: three targets found, three kept, and the
    # report the operator reads says so, so select fans out to exactly three units.
    code, report = rank(tmp_path, panel_dir, targets={"topN": 50})
    assert code == 0, report
    got = json.loads(report)
    assert got["selected"] == got["ranked"] == 3 and got["targets"] == ["fwd_ret_1d", "y_up_1d", "fwd_ret_noise_1d"]


@pytest.mark.parametrize(
    "parts",
    [{"targets": {"auto": False, "include": ["fwd_ret_5d"]}}, {"features": {"auto": False, "include": ["rsi_14"]}},
     {"features": {"exclude": ["sig", "noise_0", "noise_1", "noise_2", "noise_3"]}}],
    ids=["unknown-target", "unknown-feature", "every-feature-excluded"],
)
def test_a_spec_naming_columns_the_data_lacks_is_not_reported_as_a_missing_upstream_stage(tmp_path: Path, panel_dir: Path, parts) -> None:
    code, message = rank(tmp_path, panel_dir, **parts)
    assert code == ExitCode.INVALID_SPEC and ("targets.include" in message or "features.include" in message), message

