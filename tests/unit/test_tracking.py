"""Tracking without a server: the best model per target, the tags and names MLflow gets, spec.tracking and its flags,
the report Job the operator builds for it, and a server that cannot be reached ("not tracked", never an error)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from trainpipe.cli.main import build_parser
from trainpipe.cli.options import resolve
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.plan import PlanMetadata, PlanSummary, TrainingJob, TrainingPlan, TrainingPlanMetadata
from trainpipe.contract.reports import HtmlReport
from trainpipe.contract.tracking import TrackingOutcome, TrackingSpec
from trainpipe.io.layout import Layout
from trainpipe.tracking.choices import RUN_KEY_TAG, RunIdentity, best_per_target, experiment_name, flat_metrics, registered_name
from trainpipe.training.metrics_file import ModelMetrics, Timing
from trainpipe_operator import manifests
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.manifests import JobIntent, Owner

IDENTITY = RunIdentity(pipeline="demo", namespace="team-a", run_id="r0123456789", plan_digest="d" * 64, code_version="0.1.0+abc")
SPEC = TrackingSpec(mlflow_uri="http://mlflow:5000")
# What MLflow accepts as a registered model's name (mlflow.utils.validation._validate_model_name): no '/' nor ':'.
MLFLOW_MODEL_NAME = re.compile(r"^[^/:]+$")


def _job(job_id: str, target: str, task: str = "regression", metric: str = "ic") -> TrainingJob:
    return TrainingJob(job_id=job_id, target=target, symbol=None, route="ROUTE_CROSS_SECTIONAL", training_type="cross_sectional", task=task,
                       model_families=["lightgbm", "xgboost"], features=["a", "b"], priority=1, estimated_samples=100, reason="",
                       metadata={"metric_name": metric})


def _plan(*jobs: TrainingJob) -> TrainingPlan:
    base = PlanMetadata(generated_at="t", run_id="r1", code_version="c", config_digest="x", data_digest="y").model_dump()
    metadata = TrainingPlanMetadata(**base, routing_plan_path="p", model_families=["lightgbm", "xgboost"], model_families_requested=None)
    summary = PlanSummary(total_jobs=len(jobs), by_route={}, by_type={}, by_priority={}, total_cs_jobs=len(jobs), total_symbol_jobs=0, total_blocked=0)
    return TrainingPlan(metadata=metadata, jobs=list(jobs), summary=summary)


def _model(job_id: str, family: str, target: str, task: str = "regression", timed: bool = True, **figures: Any) -> ModelMetrics:
    timing = Timing(has_timing=timed, kind=None if timed else "constant", reason="" if timed else "constant predictions")
    return ModelMetrics(job_id=job_id, target=target, symbol=None, family=family, stage="cpu", task=task, device="cpu", n_train=100, n_test=20,
                        train_seconds=1.0, peak_rss_mb=1.0, metrics=figures, backtest={"sharpe": 0.5, "available": True}, timing=timing, fingerprint="f")


def test_the_best_model_per_target_is_the_highest_by_the_plans_criterion_and_never_one_without_timing():
    plan = _plan(_job("cs_r", "fwd_ret_5d"), _job("sym_r", "fwd_ret_5d"), _job("cs_y", "y_up_5d", "binary", "auc"))
    models = [
        _model("cs_r", "lightgbm", "fwd_ret_5d", ic=0.02, rank_ic=0.09),
        _model("cs_r", "xgboost", "fwd_ret_5d", ic=0.04, rank_ic=0.01),  # the best IC: the plan's criterion, not rank IC
        _model("sym_r", "lightgbm", "fwd_ret_5d", timed=False, ic=0.30),  # no timing: never picked, however high
        _model("cs_y", "lightgbm", "y_up_5d", "binary", ic=0.5, auc=0.51),
        _model("cs_y", "xgboost", "y_up_5d", "binary", ic=0.1, auc=0.56),
        _model("cs_y", "catboost", "y_up_5d", "binary", auc=None),  # no value of the criterion
    ]
    best = best_per_target(models, plan)
    assert {t: (b.metrics.job_id, b.metrics.family, b.criterion, b.value) for t, b in best.items()} == {
        "fwd_ret_5d": ("cs_r", "xgboost", "ic", 0.04), "y_up_5d": ("cs_y", "xgboost", "auc", 0.56)}
    # Ties go to the first in (job id, family) order, whatever order the files were read in.
    tie = [_model("cs_r", "xgboost", "fwd_ret_5d", ic=0.04), _model("cs_r", "lightgbm", "fwd_ret_5d", ic=0.04)]
    assert best_per_target(tie, plan)["fwd_ret_5d"].metrics.family == "lightgbm"
    # Only untimed models: the target registers nothing.
    assert best_per_target([_model("sym_r", "lightgbm", "fwd_ret_5d", timed=False, ic=0.3)], plan) == {}


def test_tags_name_the_pipeline_run_and_its_key_is_unique_per_namespace_pipeline_and_run():
    tags = IDENTITY.tags()
    assert tags == {RUN_KEY_TAG: "team-a/demo/r0123456789", "trainpipe.pipeline": "demo", "trainpipe.namespace": "team-a",
                    "trainpipe.run_id": "r0123456789", "trainpipe.plan_digest": "d" * 64, "trainpipe.code_version": "0.1.0+abc"}
    local = RunIdentity(pipeline="demo", namespace=None, run_id="run-abc", plan_digest=None, code_version="c")
    assert local.key == "demo/run-abc" and "trainpipe.namespace" not in local.tags() and "trainpipe.plan_digest" not in local.tags()
    assert experiment_name(SPEC, IDENTITY) == "trainpipe/team-a/demo" and experiment_name(SPEC, local) == "trainpipe/demo"
    assert experiment_name(SPEC.model_copy(update={"experiment": "prod"}), IDENTITY) == "prod"


@pytest.mark.parametrize("target", ["fwd_ret_5d", "y_up_20d", "fwd_ret/1d", "ret:5m", "weird name ü", "fwd_ret_1d?"])
def test_registered_model_names_are_names_mlflow_accepts_and_never_collide(target):
    name = registered_name(SPEC, IDENTITY, target)
    assert MLFLOW_MODEL_NAME.match(name) and name.startswith("team-a-demo-")
    other = registered_name(SPEC, IDENTITY, target.replace("/", "_").replace(":", "_").replace(" ", "_"))
    assert (name == other) == (target == target.replace("/", "_").replace(":", "_").replace(" ", "_"))
    assert registered_name(SPEC.model_copy(update={"model_prefix": "desk1"}), IDENTITY, "fwd_ret_5d") == "desk1-fwd_ret_5d"


def test_metrics_are_every_finite_figure_with_its_interval_and_the_backtests_as_bt():
    m = _model("cs_r", "lightgbm", "fwd_ret_5d", ic=0.02, ic_low=-0.01, ic_high=0.05, ic_se=0.015, rank_ic=None, ic_method="pooled",
               undefined={"auc": "regression"})
    assert flat_metrics(m) == {"n_train": 100.0, "n_test": 20.0, "train_seconds": 1.0, "ic": 0.02, "ic_low": -0.01, "ic_high": 0.05,
                               "ic_se": 0.015, "bt_sharpe": 0.5}


def test_spec_tracking_defaults_and_refusals():
    assert (SPEC.register_models, SPEC.alias, SPEC.experiment) == (True, "champion", None)
    for bad in ({"mlflowUri": "mlflow:5000"}, {"mlflowUri": "http://x", "alias": "latest"}, {"mlflowUri": "http://x", "alias": "v3"},
                {"mlflowUri": "http://x", "modelPrefix": "a/b"}, {"mlflowUri": "http://x", "unknown": 1}):
        with pytest.raises(ValidationError):
            TrackingSpec.model_validate(bad)
    assert PipelineSpec().tracking is None


def test_tracking_flags_override_the_spec_fields():
    args = build_parser().parse_args(["run", "--mlflow-uri", "http://m:5000", "--experiment", "e", "--no-register-models", "--alias", "prod"])
    spec, _ = resolve(args)
    assert spec.tracking == TrackingSpec(mlflow_uri="http://m:5000", experiment="e", register_models=False, alias="prod")
    assert resolve(build_parser().parse_args(["run"]))[0].tracking is None
    report = build_parser().parse_args(["report", "--output-dir", "x", "--mlflow-uri", "http://m:5000"])
    assert resolve(report)[0].tracking == TrackingSpec(mlflow_uri="http://m:5000")


def _report_pod(tracking: dict | None) -> dict[str, Any]:
    spec = PipelineSpec.model_validate({"data": {"dir": "example", "volume": {"claimName": "bars"}}, **({"tracking": tracking} if tracking else {})})
    job = manifests.job(spec, Owner("ns", "demo", "uid-1"), "r0123456789", JobIntent(Stage.REPORT, None, 0, 1),
                        OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1"), suspend=False)
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container


def test_the_report_job_logs_the_run_with_the_specs_tracking_and_its_secret():
    container = _report_pod({"mlflowUri": "http://mlflow.mlflow.svc:5000", "experiment": "prod", "credentialsSecret": "mlflow-token"})
    args = container["args"]
    assert args[args.index("--mlflow-uri") + 1] == "http://mlflow.mlflow.svc:5000" and args[args.index("--experiment") + 1] == "prod"
    assert "--register-models" in args and args[args.index("--alias") + 1] == "champion"
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-token"}}]
    # The flags are ones `trainpipe report` takes, and they make the same tracking spec again.
    parsed = build_parser().parse_args(args)
    assert resolve(parsed)[0].tracking == TrackingSpec(mlflow_uri="http://mlflow.mlflow.svc:5000", experiment="prod")
    untracked = _report_pod(None)
    assert "--mlflow-uri" not in untracked["args"] and "envFrom" not in untracked


def test_no_other_stage_gets_tracking():
    spec = PipelineSpec.model_validate({"data": {"dir": "example"}, "tracking": {"mlflowUri": "http://m:5000", "credentialsSecret": "s"}})
    for stage in (Stage.RANK, Stage.PLAN):
        job = manifests.job(spec, Owner("ns", "demo", "uid-1"), "r0123456789", JobIntent(stage, None, 0, 1),
                            OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1"), suspend=False)
        [container] = job["spec"]["template"]["spec"]["containers"]
        assert "--mlflow-uri" not in container["args"] and "envFrom" not in container


def test_a_server_that_cannot_be_reached_is_not_tracked_with_the_reason_after_the_retries(tmp_path, monkeypatch):
    from trainpipe.tracking import mlflow_log

    calls, sleeps = [], []

    def refuse(*args, **kwargs):
        calls.append(1)
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(mlflow_log, "_track", refuse)
    outcome = mlflow_log.track_run(Layout(tmp_path), SPEC, IDENTITY, True, sleep=sleeps.append)
    assert len(calls) == 3 and sleeps == [2.0, 4.0]
    assert outcome.state == "not tracked" and "Connection refused" in outcome.reason and "after 3 tries" in outcome.reason
    summary = HtmlReport(path="report.html", models=2, tracking=outcome.summary()).to_wire()["tracking"]
    assert summary == {"state": "not tracked", "reason": outcome.reason}
    assert outcome.line().startswith("not tracked in MLflow (http://mlflow:5000): ConnectionError")


def test_the_outcome_summary_fits_a_termination_message():
    outcome = TrackingOutcome(state="not tracked", reason="x" * 5000, mlflow_uri="http://m", experiment="e")
    assert len(HtmlReport(path="report.html", models=1, tracking=outcome.summary()).model_dump_json(by_alias=True)) < 1000


def test_without_an_mlflow_client_the_run_is_not_tracked_at_once(tmp_path, monkeypatch):
    from trainpipe.tracking import mlflow_log

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'mlflow'")

    sleeps: list[float] = []
    monkeypatch.setattr(mlflow_log, "_track", missing)
    outcome = mlflow_log.track_run(Layout(tmp_path), SPEC, IDENTITY, True, sleep=sleeps.append)
    assert outcome.state == "not tracked" and sleeps == [] and "trainpipe[tracking]" in outcome.reason


def test_a_local_run_is_named_by_its_plan_and_a_cluster_run_by_the_operators_run_id(tmp_path):
    import json as json_

    from trainpipe.runner.steps.track import run_identity

    layout = Layout(tmp_path)
    assert run_identity(layout, "demo", None, None).run_id == "unplanned"  # no plan yet: tracked all the same, under a fixed name
    plan = _plan(_job("cs_r", "fwd_ret_5d"))
    layout.master_training_plan.parent.mkdir(parents=True)
    layout.master_training_plan.write_text(json_.dumps(plan.to_snake()))
    local = run_identity(layout, "demo", None, None)
    assert local.run_id == "r1" and local.plan_digest is not None and len(local.plan_digest) == 64
    assert run_identity(layout, "demo", "team-a", "r0123456789").key == "team-a/demo/r0123456789"
