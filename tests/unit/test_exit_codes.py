"""Each known failure exits with its `ExitCode` (what the operator's podFailurePolicy reads), and says so in the termination log."""

from __future__ import annotations

import pytest

from trainpipe.cli.exits import EPILOG_TABLE, UsageError, exit_code_for
from trainpipe.cli.main import build_parser, main
from trainpipe.cli.options import OptionsError
from trainpipe.contract.exitcodes import PERMANENT_EXIT_CODES, ExitCode
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import ManifestError
from trainpipe.contract.summaries import TrainingStageSummary
from trainpipe.data.errors import DataError
from trainpipe.families.catalogue import UnknownFamilyError
from trainpipe.io.plan_files import PlanFileError
from trainpipe.io.stage_files import StageFileError
from trainpipe.resources import CpuSettingError
from trainpipe.runner.plan_identity import StalePlanError
from trainpipe.runner.steps import StageFailedError, StageInputError
from trainpipe.runner.units import UnitFailedError
from trainpipe.stages.planning import EmptyPlanError
from trainpipe.training.stage import StageGateError
from trainpipe.training.units import UnitAddressError, UnitNotFoundError


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("trainpipe: unrecognized arguments: --colour"), ExitCode.INVALID_SPEC),
        (OptionsError("invalid pipeline settings: field 'targets.topN'"), ExitCode.INVALID_SPEC),
        (ManifestError("p.yaml: field 'spec.targets.colour'"), ExitCode.INVALID_SPEC),
        (UnknownFamilyError("unknown model family 'rf'"), ExitCode.INVALID_SPEC),
        (UnitAddressError("family 'mlp' trains in the gpu stage, not cpu"), ExitCode.INVALID_SPEC),
        (CpuSettingError("TRAINPIPE_CPUS='two'"), ExitCode.INVALID_SPEC),
        (DataError("data/AAA.parquet: column sig is text"), ExitCode.BAD_DATA),
        (StageInputError("ranking/target_rankings.json is missing"), ExitCode.MISSING_INPUT),
        (StageFileError("ranking/target_rankings.json is missing: run `trainpipe rank` first"), ExitCode.MISSING_INPUT),
        (PlanFileError("no training plan there"), ExitCode.MISSING_INPUT),
        (UnitNotFoundError("no select unit 7"), ExitCode.MISSING_INPUT),
        (StageGateError("the gpu stage cannot start", ["j/lightgbm: missing"]), ExitCode.GATE_CLOSED),
        (StalePlanError("written for run 'r1', not 'r2'"), ExitCode.STALE_PLAN),
        (EmptyPlanError({"fwd_ret_1d": ["cs DISALLOWED"]}), ExitCode.EMPTY_PLAN),
        (StageFailedError(Stage.CPU, TrainingStageSummary(units=2, trained=1, failed=1, skipped=0, reused=0, devices=["cpu"], failures=[])),
         ExitCode.UNIT_FAILED),
        (UnitFailedError("cpu unit lightgbm[0] failed"), ExitCode.UNIT_FAILED),
        (RuntimeError("a bug"), None),  # unknown: keeps its traceback, exits 1
        (KeyError("x"), None),
    ],
)
def test_exit_code_of_each_known_failure(error, code) -> None:
    assert exit_code_for(error) == code


def test_only_a_unit_failure_is_retried() -> None:
    assert ExitCode.UNIT_FAILED.retriable and set(PERMANENT_EXIT_CODES) == {2, 3, 4, 5, 6, 7, 8, 9}


def test_help_lists_every_exit_code() -> None:
    epilog = build_parser().epilog or ""
    assert EPILOG_TABLE in epilog
    for code in ExitCode:
        assert f"{int(code)}  {code.name}" in epilog


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["rank", "--spec-json", "{not json"], ["--spec-json is not valid JSON"]),
        (["rank", "--spec-json", "[1, 2]"], ["one JSON object"]),
        (["rank", "--spec-json", '{"targets": {"topN": 0}}'], ["--spec-json", "targets.topN"]),
        (["rank", "--spec-json", '{"colour": "red"}'], ["--spec-json", "field 'colour'"]),
        (["rank", "--spec-json", "{}", "-f", "pipeline.yaml"], ["-f or with --spec-json, not both"]),
        (["rank", "--spec-json", "{}", "--top-n-targets", "0"], ["targets.topN"]),  # flags overlay the JSON, then it is validated
        (["train", "--stage", "cpu", "--unit-index", "-1"], ["--unit-index", "negative"]),
        (["train", "--stage", "cpu", "--family", "lightgbm", "--plan-digest", "abc"], ["not a plan digest"]),
        (["select", "--target", "a", "--unit-index", "0"], ["not allowed with argument"]),
        (["rank", "--run-id", "Run_1"], ["not a run id"]),
        (["rank", "--families", "random_forest"], ["unknown model family 'random_forest'"]),
    ],
)
def test_invalid_flags_exit_invalid_spec_and_say_why_in_the_termination_log(tmp_path, argv, names) -> None:
    log = tmp_path / "termination-log"
    assert main([*argv, "--output-dir", str(tmp_path / "out"), "--termination-log", str(log)]) == ExitCode.INVALID_SPEC
    line = log.read_text()
    assert line.count("\n") == 1 and "INVALID_SPEC" in line
    for name in names:
        assert name in line
    assert not (tmp_path / "out").exists()  # nothing was started


def test_spec_json_is_overlaid_by_flags() -> None:
    from trainpipe.cli.options import resolve

    args = build_parser().parse_args(["rank", "--spec-json", '{"data": {"dir": "/bars"}, "targets": {"topN": 3}}', "--top-n-targets", "2"])
    spec, name = resolve(args)
    assert (spec.data.dir, spec.targets.top_n, name) == ("/bars", 2, "pipeline")


def test_missing_data_is_bad_data(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    log = tmp_path / "log"
    assert main(["rank", "--data-dir", str(empty), "--output-dir", str(tmp_path / "out"), "--termination-log", str(log)]) == ExitCode.BAD_DATA
    assert log.read_text().startswith("rank: BAD_DATA: ") and str(empty) in log.read_text()
