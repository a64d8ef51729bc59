"""Unit addressing through the CLI on a tiny panel: one select target, one training unit, exit codes, termination logs, reuse.

What the operator's pods run: `select --unit-index I`, `plan`, `train --stage S --family F --unit-index I --plan-digest D`,
each with `--termination-log`, `--run-id` and `--reuse-dir`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from panels import make_panel, write_panel
from trainpipe.cli.main import main
from trainpipe.contract.exitcodes import ExitCode
from trainpipe.contract.names import Stability
from trainpipe.contract.plan import plan_digest
from trainpipe.contract.units import family_units, unit_counts
from trainpipe.io.layout import Layout
from trainpipe.io.plan_files import read_training_plan
from trainpipe.io.requests import read_worker_request
from trainpipe.io.stage_files import read_selection
from trainpipe.stages.stability import combine


def _spec(data: Path) -> str:
    return json.dumps({
        "data": {"dir": str(data), "minRowsPerSymbol": 100},
        "targets": {"topN": 2}, "features": {"topM": 3}, "ranking": {"folds": 2, "maxRows": 1000},
        "routing": {"minSampleSizeCs": 100, "minSampleSizeSymbol": 50},
        "training": {"families": ["lightgbm", "mlp"]}, "seed": 7,
        # Plumbing under test, not evidence: a 300-bar panel is too short to show its signal clears noise.
        "evidence": {"trainAnyway": True},
    })


class Runs:
    """Run folders side by side under one pipeline folder, as the operator lays them out."""

    def __init__(self, root: Path, data: Path) -> None:
        self.root, self.spec = root, _spec(data)

    def cli(self, run: str, *argv: str) -> tuple[int, dict | str]:
        """Exit code and what the termination log says (parsed JSON on success)."""
        log = self.root.parent / f"{run}.termination-log"
        log.unlink(missing_ok=True)
        code = main([*argv, "--spec-json", self.spec, "--output-dir", str(self.root / run), "--threads", "1", "--termination-log", str(log)])
        text = log.read_text()
        assert text.endswith("\n") and text.count("\n") == 1 and len(text.encode()) <= 4096
        return code, (json.loads(text) if code == 0 else text.strip())

    def layout(self, run: str) -> Layout:
        return Layout(self.root / run)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    data = tmp_path_factory.mktemp("data")
    write_panel(make_panel(n_days=300), data)
    runs = Runs(tmp_path_factory.mktemp("pipeline"), data)
    code, report = runs.cli("ra", "rank")
    assert code == 0 and report["selected"] == 2 and report["targets"] == ["fwd_ret_1d", "y_up_1d"], report
    assert runs.cli("ra", "select") == (0, {"stage": "select", "status": "ran", "targets": 2})
    return runs


@pytest.fixture(scope="module")
def per_unit(runs: Runs) -> dict:
    """Run rb: the ranking of ra, then one select pod per target (by index and by name), then the plan."""
    shutil.copytree(runs.layout("ra").ranking_dir, runs.layout("rb").ranking_dir)
    code, missing = runs.cli("rb", "plan")
    assert code == ExitCode.MISSING_INPUT and "fwd_ret_1d, y_up_1d" in missing
    one = runs.cli("rb", "select", "--unit-index", "1")
    zero = runs.cli("rb", "select", "--target", "fwd_ret_1d")
    code, plan = runs.cli("rb", "plan")
    assert code == 0, plan
    return {"select": [zero, one], "plan": plan}


def test_a_select_unit_writes_exactly_what_the_full_stage_writes_for_its_target(runs, per_unit) -> None:
    (code0, zero), (code1, one) = per_unit["select"]
    assert (code0, code1) == (0, 0)
    # A first run: nothing earlier to compare with, so the resamples of its rows grade it.
    first = read_selection(runs.layout("rb"), "y_up_1d").stability
    assert first.against_previous.state is Stability.UNKNOWN and first.against_previous.note.startswith("first run")
    assert first.resampled.resamples == 3 and first.state is first.resampled.state is not Stability.UNKNOWN
    assert one == {"stage": "select", "unitIndex": 1, "target": "y_up_1d", "status": "ran", "features": 3, "stability": first.state.value}
    assert zero["unitIndex"] == 0 and zero["target"] == "fwd_ret_1d"
    full, alone = runs.layout("ra"), runs.layout("rb")
    for target in ("fwd_ret_1d", "y_up_1d"):
        assert alone.selected_features(target).read_bytes() == full.selected_features(target).read_bytes()
        assert alone.feature_scores(target).read_bytes() == full.feature_scores(target).read_bytes()
        assert alone.select_unit_record(target).exists()
    assert not alone.selection_summary.exists()  # only the whole stage writes the summary; plan does not need it


def test_a_select_unit_given_the_last_good_run_compares_with_its_selection(runs, per_unit) -> None:
    # What the operator passes a select pod: the pipeline folder to copy from and the last succeeded run's folder.
    shutil.copytree(runs.layout("ra").ranking_dir, runs.layout("rp").ranking_dir)
    good = runs.layout("ra").root
    code, report = runs.cli("rp", "select", "--unit-index", "1", "--reuse-dir", str(runs.root), "--previous-run", str(good))
    assert code == 0 and report["status"] == "reused"
    got = read_selection(runs.layout("rp"), "y_up_1d").stability
    copied = read_selection(good_layout := runs.layout("ra"), "y_up_1d").stability
    assert copied.against_previous.state is Stability.UNKNOWN  # the run copied from was a first run
    # Same inputs as the last good run, so the same features: the comparison with it is made here, not copied.
    assert (got.against_previous.state, got.against_previous.overlap, got.against_previous.kendall_tau) == (Stability.STABLE, 1.0, 1.0)
    assert got.against_previous.previous_run == str(good) and got.against_previous.previous_features == read_selection(good_layout, "y_up_1d").features
    assert got.resampled == copied.resampled and got.state is combine(Stability.STABLE, copied.resampled.state)
    assert report["stability"] == got.state.value
    record = json.loads(runs.layout("rp").select_unit_record("y_up_1d").read_text())
    assert record["summary"]["stability"] == got.state.value and record["reused_from"] == str(good)
    # The pod's retry finds it done, with the same comparison; a folder without that selection means none, not an error.
    assert runs.cli("rp", "select", "--unit-index", "1", "--previous-run", str(good))[1]["status"] == "cached"
    assert read_selection(runs.layout("rp"), "y_up_1d").stability == got
    code, report = runs.cli("rp", "select", "--unit-index", "1", "--previous-run", str(runs.root / "gone"))
    assert code == 0 and report["status"] == "cached"
    gone = read_selection(runs.layout("rp"), "y_up_1d").stability.against_previous
    assert gone.state is Stability.UNKNOWN and "is missing" in gone.note


def test_a_whole_select_stage_copied_from_the_last_good_run_is_compared_with_it(runs, per_unit) -> None:
    shutil.copytree(runs.layout("ra").ranking_dir, runs.layout("rq").ranking_dir)
    good = runs.layout("ra").root
    assert runs.cli("rq", "select", "--reuse-dir", str(runs.root), "--previous-run", str(good)) == (
        0, {"stage": "select", "status": "reused", "targets": 2})
    here = runs.layout("rq")
    record = json.loads(here.stage_record("select").read_text())
    summary = json.loads(here.selection_summary.read_text())
    assert record["reused_from"] == str(good)
    for target in ("fwd_ret_1d", "y_up_1d"):
        stab = read_selection(here, target).stability
        assert (stab.against_previous.state, stab.against_previous.previous_run) == (Stability.STABLE, str(good))
        assert record["summary"]["targets"][target]["stability"] == summary["targets"][target]["stability"] == stab.state.value


def test_a_finished_select_unit_exits_at_once(runs, per_unit) -> None:
    path = runs.layout("rb").feature_scores("y_up_1d")
    before = path.stat().st_mtime_ns
    code, report = runs.cli("rb", "select", "--unit-index", "1")
    assert code == 0 and report["status"] == "cached"
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("select", "--unit-index", "2"), "select unit 2: MISSING_INPUT: ranking kept 2 target(s) for selection (fwd_ret_1d, y_up_1d)"),
        (("select", "--target", "fwd_ret_noise_1d"), "select target fwd_ret_noise_1d: MISSING_INPUT: target 'fwd_ret_noise_1d' is not among"),
    ],
)
def test_a_select_unit_the_ranking_does_not_have_is_missing_input(runs, per_unit, argv, says) -> None:
    code, text = runs.cli("rb", *argv)
    assert code == ExitCode.MISSING_INPUT and text.startswith(says), text


def test_plan_reports_digest_units_and_path(runs, per_unit) -> None:
    report = per_unit["plan"]
    layout = runs.layout("rb")
    plan = read_training_plan(layout.master_training_plan)
    assert report["planDigest"] == plan_digest(plan) and report["runId"] == plan.metadata.run_id
    assert report["units"] == unit_counts(plan) and set(report["units"]) == {"lightgbm", "mlp"}
    assert layout.root / report["path"] == layout.master_training_plan


@pytest.fixture(scope="module")
def trained(runs: Runs, per_unit: dict) -> dict:
    """Run rb: unit 0 of lightgbm, as its pod runs it."""
    digest = per_unit["plan"]["planDigest"]
    code, report = runs.cli("rb", "train", "--stage", "cpu", "--family", "lightgbm", "--unit-index", "0", "--plan-digest", digest)
    assert code == 0, report
    return report


def test_train_one_unit_trains_exactly_that_unit(runs, per_unit, trained) -> None:
    layout = runs.layout("rb")
    unit = family_units(read_training_plan(layout.master_training_plan), "lightgbm")[0]
    assert trained == {"stage": "cpu", "family": "lightgbm", "unitIndex": 0, "unit": unit.unit_id, "jobId": unit.job_id,
                       "target": unit.target, "status": "ran", "device": "cpu"}
    assert sorted(p.relative_to(layout.models_dir).as_posix() for p in layout.models_dir.glob("*/*/metrics.json")) == [f"{unit.job_id}/lightgbm/metrics.json"]
    work = layout.unit_work_dir("cpu", unit.unit_id)
    assert {p.name for p in work.iterdir()} == {"request.json", "results.jsonl", "worker.log", "result.json"}
    assert read_worker_request(work / "request.json").plan_path == str(layout.master_training_plan.resolve())


def test_a_finished_training_unit_exits_at_once(runs, per_unit, trained) -> None:
    layout = runs.layout("rb")
    metrics = layout.model_dir(trained["jobId"], "lightgbm") / "metrics.json"
    before = metrics.stat().st_mtime_ns
    code, report = runs.cli("rb", "train", "--stage", "cpu", "--family", "lightgbm", "--unit-index", "0", "--plan-digest", per_unit["plan"]["planDigest"])
    assert code == 0 and report["status"] == "cached" and report["device"] == "cpu"
    assert metrics.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (("--stage", "cpu", "--family", "lightgbm", "--unit-index", "0", "--plan-digest", "0" * 64),
         ExitCode.STALE_PLAN, "cpu family lightgbm unit 0: STALE_PLAN: "),
        (("--stage", "cpu", "--family", "lightgbm", "--unit-index", "0", "--run-id", "r0000000000"),
         ExitCode.STALE_PLAN, "written for run 'run-"),
        (("--stage", "cpu", "--family", "mlp", "--unit-index", "0"), ExitCode.INVALID_SPEC, "family 'mlp' trains in the gpu stage, not cpu"),
        (("--stage", "gpu", "--family", "lightgbm", "--unit-index", "0"), ExitCode.INVALID_SPEC, "use --stage cpu"),
        (("--stage", "cpu", "--family", "lightgbm", "--unit-index", "99"), ExitCode.MISSING_INPUT, "so there is no unit 99"),
        (("--stage", "cpu", "--unit-index", "0"), ExitCode.INVALID_SPEC, "--unit-index needs --family"),
        # the cpu units of the plan are not all done (only lightgbm[0] is)
        (("--stage", "gpu", "--family", "mlp", "--unit-index", "0"), ExitCode.GATE_CLOSED, "gpu family mlp unit 0: GATE_CLOSED: the gpu stage cannot start"),
    ],
)
def test_a_unit_that_must_not_train_exits_with_its_code(runs, per_unit, trained, argv, code, says) -> None:
    layout = runs.layout("rb")
    models_before = sorted(layout.models_dir.glob("*/*"))
    got, text = runs.cli("rb", "train", *argv)
    assert got == code and says in text, text
    assert sorted(layout.models_dir.glob("*/*")) == models_before


def test_a_new_run_copies_what_a_sibling_run_computed_from_the_same_inputs(runs, per_unit, trained) -> None:
    reuse = ("--reuse-dir", str(runs.root), "--run-id", "rc1")
    code, rank = runs.cli("rc", "rank", *reuse)
    assert code == 0 and rank["status"] == "reused" and rank["selected"] == 2
    for index in (0, 1):
        code, report = runs.cli("rc", "select", "--unit-index", str(index), *reuse)
        assert code == 0 and report["status"] == "reused"
    code, plan = runs.cli("rc", "plan", *reuse)
    assert code == 0 and plan["status"] == "ran" and plan["runId"] == "rc1"  # a plan records its run: written per run
    assert plan["planDigest"] != per_unit["plan"]["planDigest"] and plan["units"] == per_unit["plan"]["units"]
    code, unit = runs.cli("rc", "train", "--stage", "cpu", "--family", "lightgbm", "--unit-index", "0", "--plan-digest", plan["planDigest"], *reuse)
    assert code == 0 and unit["status"] == "reused" and unit["unit"] == trained["unit"]
    here, there = runs.layout("rc"), runs.layout("rb")
    assert (here.model_dir(unit["jobId"], "lightgbm") / "model.txt").read_bytes() == (there.model_dir(unit["jobId"], "lightgbm") / "model.txt").read_bytes()
    assert json.loads(here.stage_record("rank").read_text())["reused_from"] == str(runs.root / "ra")


def test_train_finds_a_plan_in_the_seeds_legacy_folder_and_trains_exactly_it(runs, per_unit, trained) -> None:
    """Seed parity: an output folder whose plan sits in METRICS/training_plan/ (older seed runs) trains that plan."""
    source, layout = runs.layout("rb"), runs.layout("rd")
    shutil.copytree(source.training_plan_dir, layout.legacy_training_plan_dir)
    code, report = runs.cli("rd", "train", "--stage", "cpu", "--family", "lightgbm", "--unit-index", "0", "--plan-digest", per_unit["plan"]["planDigest"])
    assert code == 0 and report["status"] == "ran" and report["unit"] == trained["unit"], report
    assert not layout.training_plan_dir.exists()  # found, not copied
    work = layout.unit_work_dir("cpu", report["unit"])
    assert read_worker_request(work / "request.json").plan_path == str((layout.legacy_training_plan_dir / "master_training_plan.json").resolve())


def test_train_with_training_plan_dir_trains_every_cpu_unit_of_that_plan(runs, per_unit, tmp_path) -> None:
    given = tmp_path / "seed_plan"
    shutil.copytree(runs.layout("rb").training_plan_dir, given)
    plan = read_training_plan(given)
    code, report = runs.cli("re", "train", "--stage", "cpu", "--training-plan-dir", str(given))
    assert code == 0 and report["failed"] == 0, report
    layout = runs.layout("re")
    want = sorted(f"{u.job_id}/lightgbm" for u in family_units(plan, "lightgbm"))
    assert sorted(p.parent.relative_to(layout.models_dir).as_posix() for p in layout.models_dir.glob("*/*/metrics.json")) == want
    assert not layout.training_plan_dir.exists()


def test_train_without_a_plan_says_where_it_looked(runs, per_unit, tmp_path) -> None:
    code, text = runs.cli("rf", "train", "--stage", "cpu")
    assert code == ExitCode.MISSING_INPUT and "METRICS/training_plan/master_training_plan.json" in text and "--training-plan-dir" in text, text
    code, text = runs.cli("rf", "train", "--stage", "cpu", "--training-plan-dir", str(tmp_path / "nowhere"))
    assert code == ExitCode.MISSING_INPUT and "nowhere/master_training_plan.json" in text, text
