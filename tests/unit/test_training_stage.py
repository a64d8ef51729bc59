"""The training stages end to end on a tiny synthetic panel: isolated workers, per-job families, resume, failures, the GPU gate."""

from __future__ import annotations

import pytest
from trainpipe_bench.family_bench import benchmark_plan
from trainpipe_bench.synthetic import SYNTHETIC_LOADER, load_synthetic_panel, synthetic_frame, write_synthetic_data

from trainpipe.contract.names import Route, TaskType, TrainingType
from trainpipe.families.base import FamilyParamError
from trainpipe.families.registry import load_model
from trainpipe.io.layout import Layout
from trainpipe.io.requests import read_worker_request
from trainpipe.io.training_files import read_stage_result
from trainpipe.training.metrics_file import read_all_metrics
from trainpipe.training.settings import TrainingSettings
from trainpipe.training.stage import StageGateError, run_training, run_training_stage

FEATURES = ["f0", "f1", "f2", "f3"]
PARAMS = {"lightgbm": {"n_estimators": 20}, "tab_lstm": {"epochs": 1, "d_token": 4, "hidden": 4, "batch_size": 64}}
KW = {"interval": None, "holdout_fraction": 0.25, "embargo_bars": 2, "seed": 1, "params": PARAMS, "panel_loader": SYNTHETIC_LOADER}


def settings(data_dir, **changes) -> TrainingSettings:
    return TrainingSettings(data_dir, **{**KW, **changes})


def _plan(extra_feature: str | None = None):
    plan = benchmark_plan("fwd_ret_1d", FEATURES, ["lightgbm", "ftrl_proximal", "tab_lstm"])
    cs = plan.jobs[0]
    sym = cs.model_copy(update={"job_id": "sym_aaa_y_up_1d", "target": "y_up_1d", "task": TaskType.BINARY, "symbol": "AAA",
                                "route": Route.SYMBOL_SPECIFIC, "training_type": TrainingType.SYMBOL_SPECIFIC,
                                "model_families": ["ftrl_proximal", "reward_based"],
                                "features": FEATURES + ([extra_feature] if extra_feature else [])})
    summary = plan.summary.model_copy(update={"total_jobs": 2, "total_symbol_jobs": 1})
    return type(plan).model_validate({**plan.model_dump(), "jobs": [cs.model_dump(), sym.model_dump()], "summary": summary.model_dump()})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    write_synthetic_data(path, synthetic_frame(n_ts=120, symbols=("AAA", "BBB", "CCC"), n_features=5, seed=2))
    return path


def test_cpu_then_gpu_trains_each_job_on_its_rows_and_resumes(tmp_path, data_dir) -> None:
    layout = Layout(tmp_path)
    events = []
    results = run_training(_plan(), layout, settings(data_dir, on_progress=events.append))
    cpu, gpu = results["cpu"], results["gpu"]
    assert (cpu.trained, cpu.failed, gpu.trained, gpu.failed) == (4, 0, 1, 0), cpu.to_file()
    assert [e["family"] for e in events if e["event"] == "family_start"] == ["lightgbm", "reward_based", "ftrl_proximal", "tab_lstm"]
    metrics = {(m.job_id, m.family): m for m in read_all_metrics(layout)}
    assert set(metrics) == {("bench_fwd_ret_1d", "lightgbm"), ("bench_fwd_ret_1d", "ftrl_proximal"), ("bench_fwd_ret_1d", "tab_lstm"),
                            ("sym_aaa_y_up_1d", "ftrl_proximal"), ("sym_aaa_y_up_1d", "reward_based")}
    cs, sym = metrics[("bench_fwd_ret_1d", "ftrl_proximal")], metrics[("sym_aaa_y_up_1d", "ftrl_proximal")]
    assert cs.n_train + cs.n_test > 2 * (sym.n_train + sym.n_test)  # the symbol job really trains on AAA only
    assert sym.symbol == "AAA" and "auc" in sym.metrics and "r2" in cs.metrics
    assert cs.metrics["rank_ic_method"] == "cross_sectional_mean" and sym.metrics["rank_ic_method"] == "pooled"
    assert cs.backtest["mode"] == "cross_sectional_long_short" and sym.backtest["mode"] == "single_symbol_sign"
    assert all(m.device == "cpu" and m.peak_rss_mb > 0 for m in metrics.values())
    assert cs.holdout["purge_bars"] == 1 + 2
    assert metrics[("bench_fwd_ret_1d", "tab_lstm")].stage == "gpu"
    # a GPU family trained on this CPU says so in its metrics.json; CPU families carry no budget
    budget = metrics[("bench_fwd_ret_1d", "tab_lstm")].budget
    assert budget is not None and budget["device"] == "cpu" and budget["reason"] == "no GPU: CPU budget"
    assert budget["epochs"] == 1 and budget["batch_size"] == 1024  # the plan's 1 epoch stays; the batch is raised
    assert metrics[("bench_fwd_ret_1d", "tab_lstm")].params["batch_size"] == 1024
    assert metrics[("bench_fwd_ret_1d", "lightgbm")].budget is None

    # the saved model reloads and predicts new rows
    panel = load_synthetic_panel(data_dir)
    model = load_model(layout.model_dir("sym_aaa_y_up_1d", "reward_based"))
    proba = model.predict(panel.frame[panel.frame["symbol"] == "AAA"].tail(5))
    assert ((proba >= 0) & (proba <= 1)).all()

    again = run_training(_plan(), layout, settings(data_dir))
    assert again["cpu"].trained == 0 and again["cpu"].skipped == 4 and again["gpu"].skipped == 1


def test_a_failing_unit_is_recorded_and_blocks_the_gpu_stage(tmp_path, data_dir) -> None:
    layout = Layout(tmp_path)
    plan = _plan(extra_feature="not_in_data")
    cpu = run_training_stage(plan, "cpu", layout, settings(data_dir, families=("ftrl_proximal", "lightgbm")))
    status = {(r.job_id, r.family): r.status for r in cpu.records}
    assert status == {("bench_fwd_ret_1d", "lightgbm"): "trained", ("bench_fwd_ret_1d", "ftrl_proximal"): "trained",
                      ("sym_aaa_y_up_1d", "ftrl_proximal"): "failed"}
    error = (layout.models_dir / "sym_aaa_y_up_1d" / "ftrl_proximal.error.txt").read_text()
    assert "not_in_data" in error
    written = read_stage_result(layout.training_work_dir("cpu") / "result.json")
    assert (written.trained, written.failed) == (2, 1)
    [failed] = [r for r in written.records if r.status == "failed"]
    assert failed.job_id == "sym_aaa_y_up_1d" and "not_in_data" in failed.reason  # the worker's error, carried to the stage's record
    assert not layout.model_dir("sym_aaa_y_up_1d", "ftrl_proximal").exists()
    with pytest.raises(StageGateError, match="sym_aaa_y_up_1d/ftrl_proximal: failed") as info:
        run_training_stage(plan, "gpu", layout, settings(data_dir, families=("ftrl_proximal", "lightgbm", "tab_lstm")))
    assert info.value.problems == ["sym_aaa_y_up_1d/ftrl_proximal: failed"]


def test_bad_parameters_fail_before_any_worker_starts(tmp_path, data_dir) -> None:
    with pytest.raises(FamilyParamError, match="lightgbm.*n_estimators"):
        run_training_stage(_plan(), "cpu", Layout(tmp_path), settings(data_dir, families=("lightgbm",), params={"lightgbm": {"n_estimators": -5}}))
    assert not (tmp_path / "models").exists()
    with pytest.raises(ValueError, match="unknown training stage"):
        run_training_stage(_plan(), "tpu", Layout(tmp_path), settings(data_dir))


def test_cpu_worker_hides_gpus_and_blocks_frameworks(tmp_path, data_dir) -> None:
    layout = Layout(tmp_path)
    run_training_stage(_plan(), "cpu", layout, settings(data_dir, families=("lightgbm",)))
    request = read_worker_request(layout.training_work_dir("cpu") / "lightgbm" / "request.json")
    assert request.family == "lightgbm" and [u.job_id for u in request.units] == ["bench_fwd_ret_1d"]
    from trainpipe.training.worker import _FrameworkBlocker

    with pytest.raises(ImportError, match="blocked in CPU-stage"):
        _FrameworkBlocker().find_spec("torch.nn")


_TIMING = ("train_seconds", "peak_rss_mb")


def test_a_unit_trained_alone_is_the_unit_a_whole_stage_trains(tmp_path, data_dir) -> None:
    from trainpipe.contract.units import family_units
    from trainpipe.io.atomic import write_text
    from trainpipe.io.training_files import read_unit_run_result
    from trainpipe.training.stage import run_training_unit

    plan = _plan()
    whole = Layout(tmp_path / "whole")
    run_training_stage(plan, "cpu", whole, settings(data_dir, families=("ftrl_proximal",)))
    alone = Layout(tmp_path / "alone")
    write_text(alone.master_training_plan, plan.model_dump_json())  # a unit reads the plan where `plan` wrote it
    units = family_units(plan, "ftrl_proximal")
    assert [u.job_id for u in units] == ["bench_fwd_ret_1d", "sym_aaa_y_up_1d"]
    unit, record = run_training_unit(plan, "cpu", "ftrl_proximal", 1, alone, settings(data_dir), plan_path=alone.master_training_plan)
    assert (unit.job_id, record.status) == ("sym_aaa_y_up_1d", "trained")
    [a] = [m for m in read_all_metrics(alone)]
    b = {(m.job_id, m.family): m for m in read_all_metrics(whole)}[("sym_aaa_y_up_1d", "ftrl_proximal")]
    assert a.model_dump(exclude=set(_TIMING)) == b.model_dump(exclude=set(_TIMING))
    rows = load_synthetic_panel(data_dir).frame
    rows = rows[rows["symbol"] == "AAA"].tail(10)
    assert (load_model(alone.model_dir(unit.job_id, "ftrl_proximal")).predict(rows)
            == load_model(whole.model_dir(unit.job_id, "ftrl_proximal")).predict(rows)).all()
    # its working files are its own: another unit of the family in parallel writes elsewhere
    result = read_unit_run_result(alone.unit_work_dir("cpu", unit.unit_id) / "result.json")
    assert (result.unit_id, result.index, result.job_id, result.status) == (unit.unit_id, 1, "sym_aaa_y_up_1d", "trained")
    assert not alone.training_work_dir("cpu").exists()
    _, again = run_training_unit(plan, "cpu", "ftrl_proximal", 1, alone, settings(data_dir), plan_path=alone.master_training_plan)
    assert again.status == "skipped"


def test_a_units_next_try_clears_what_a_killed_try_left_and_nothing_of_its_neighbours(tmp_path, data_dir) -> None:
    from trainpipe.io.atomic import write_text
    from trainpipe.training.stage import run_training_unit

    plan = _plan()
    layout = Layout(tmp_path / "run")
    write_text(layout.master_training_plan, plan.model_dump_json())
    mine = layout.model_dir("sym_aaa_y_up_1d", "ftrl_proximal")
    mine.parent.mkdir(parents=True)
    (mine.parent / ".ftrl_proximal.k1ll3d.tmp").mkdir()  # a model folder half-written when its pod was killed
    (mine.parent / ".ftrl_proximal.k1ll3d.tmp" / "model.txt").write_text("half")
    (mine.parent / ".lightgbm.w0rk1ng.tmp").mkdir()  # another family's pod writing beside it right now
    unit, record = run_training_unit(plan, "cpu", "ftrl_proximal", 1, layout, settings(data_dir), plan_path=layout.master_training_plan)
    assert record.status == "trained"
    assert sorted(p.name for p in mine.parent.iterdir()) == [".lightgbm.w0rk1ng.tmp", "ftrl_proximal"]


def test_family_narrows_a_stage_to_that_familys_units(tmp_path, data_dir) -> None:
    layout = Layout(tmp_path)
    result = run_training_stage(_plan(), "cpu", layout, settings(data_dir), family="reward_based")
    assert [(r.job_id, r.family, r.status) for r in result.records] == [("sym_aaa_y_up_1d", "reward_based", "trained")]
    assert [(m.job_id, m.family) for m in read_all_metrics(layout)] == [("sym_aaa_y_up_1d", "reward_based")]
    # a family the `families` filter leaves out trains nothing
    none = run_training_stage(_plan(), "cpu", layout, settings(data_dir, families=("lightgbm",)), family="reward_based")
    assert none.records == []


def test_reuse_takes_a_finished_unit_instead_of_training_it(tmp_path, data_dir) -> None:
    seen = []

    def reuse(job_id, family, fingerprint):
        seen.append((job_id, family))
        return "an earlier run" if family == "lightgbm" else None

    result = run_training_stage(_plan(), "cpu", Layout(tmp_path), settings(data_dir, families=("lightgbm",), reuse=reuse))
    assert [(r.family, r.status, r.reason) for r in result.records] == [("lightgbm", "reused", "same fingerprint in an earlier run")]
    assert result.reused == 1 and result.trained == 0 and seen == [("bench_fwd_ret_1d", "lightgbm")]


def test_a_worker_request_is_refused_with_its_file_and_field_named(tmp_path) -> None:
    from trainpipe.io.requests import RequestFileError

    path = tmp_path / "request.json"
    with pytest.raises(RequestFileError, match=r"request\.json is missing: run the training stage first"):
        read_worker_request(path)
    path.write_text('{"family": "lightgbm", "embargoBars": 5, "colour": "red"}')
    with pytest.raises(RequestFileError, match=r"request.json: not a valid worker request: .*field 'units': Field required.*field 'colour': Extra inputs"):
        read_worker_request(path)
