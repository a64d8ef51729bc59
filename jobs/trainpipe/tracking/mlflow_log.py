"""Log a finished run folder to MLflow and register its best models; called by `trainpipe.runner.steps.track` (the end of
`trainpipe run`, and `trainpipe report`, the last Job of a cluster run).

One MLflow run per pipeline run, found again by its `trainpipe.run_key` tag, so a rerun of this step finishes
the same run instead of starting a second; a nested run per trained model (tagged `trainpipe.unit`) with its
parameters, holdout metrics and intervals, the model as a pyfunc that predicts through trainpipe's own
preprocessing (the one registered) and, where MLflow has a flavour for the family's library, the bare
model in that flavour. A model logged before is not logged again. Every failure is retried with backoff;
after the last try the run is "not tracked" with the reason, and training is never failed for it.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainpipe.contract.plan import TrainingPlan
from trainpipe.contract.tracking import RegisteredModel, TrackingOutcome, TrackingSpec
from trainpipe.io.layout import Layout
from trainpipe.tracking.choices import (
    RUN_KEY_TAG,
    TAG_PREFIX,
    UNIT_TAG,
    RunIdentity,
    best_per_target,
    experiment_name,
    flat_metrics,
    flat_params,
    registered_name,
    unit_run_name,
)
from trainpipe.training.metrics_file import ModelMetrics, read_all_metrics

# MLflow asks for type hints on `TrainpipeModel.predict` when it logs the class: the model takes any frame that holds the
# job's features, by name, so it has none. (Where MLflow sets its own warning filters around a call, this one does not reach.)
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method", category=UserWarning)

ATTEMPTS = 3
BACKOFF_SECONDS = 2.0  # doubled after each failed try: 2 s, 4 s
MODEL_URI_TAG = TAG_PREFIX + "model_uri"
NATIVE_TAG = TAG_PREFIX + "native_model"
PARENT_TAG = "mlflow.parentRunId"
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
# MLflow's own defaults retry a refused connection for minutes and report usage to its makers: a training Job
# has no internet, and this module retries on its own. A user's setting of any of them wins.
CLIENT_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # stdout is the command's result (`trainpipe run` ends with the report's path): no run URLs there.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_PRINT_MODEL_URLS_ON_CREATION": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}
# family -> (MLflow flavour module, the trainer's attribute holding the library's model)
NATIVE_FLAVOURS: dict[str, tuple[str, str]] = {
    "lightgbm": ("mlflow.lightgbm", "booster"),
    "xgboost": ("mlflow.xgboost", "booster"),
    "catboost": ("mlflow.catboost", "model"),
    "ngboost": ("mlflow.sklearn", "model"),
    "mlp": ("mlflow.tensorflow", "net"),
    "multi_task": ("mlflow.tensorflow", "net"),
    **{family: ("mlflow.pytorch", "net") for family in ("cnn1d", "lstm", "transformer", "tab_cnn", "tab_lstm", "tab_transformer")},
}


def track_run(layout: Layout, spec: TrackingSpec, identity: RunIdentity, succeeded: bool, *,
              attempts: int = ATTEMPTS, backoff: float = BACKOFF_SECONDS, sleep: Callable[[float], None] = time.sleep) -> TrackingOutcome:
    """Log the run folder (retrying the whole, idempotent, logging `attempts` times), register its best models when it `succeeded`."""
    for key, value in CLIENT_ENV.items():
        os.environ.setdefault(key, value)
    experiment = experiment_name(spec, identity)
    reason = ""
    for attempt in range(attempts):
        try:
            return _track(layout, spec, identity, succeeded, experiment)
        except ImportError as exc:  # no MLflow client here: no retry helps
            return TrackingOutcome(state="not tracked", reason=f"{_reason(exc)}; install the tracking extra (pip install 'trainpipe[tracking]')",
                                   mlflow_uri=spec.mlflow_uri, experiment=experiment)
        except Exception as exc:  # noqa: BLE001 — a tracking server's trouble must never fail training: retried, then recorded
            reason = _reason(exc)
            if attempt + 1 < attempts:
                sleep(backoff * 2**attempt)
    return TrackingOutcome(state="not tracked", reason=f"{reason} (after {attempts} tries)", mlflow_uri=spec.mlflow_uri, experiment=experiment)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}"


def _track(layout: Layout, spec: TrackingSpec, identity: RunIdentity, succeeded: bool, experiment: str) -> TrackingOutcome:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(spec.mlflow_uri)
    mlflow.set_registry_uri(spec.mlflow_uri)
    client = MlflowClient(spec.mlflow_uri, spec.mlflow_uri)
    experiment_id = _experiment(client, experiment)
    parent = _parent_run(client, experiment_id, identity)
    models = read_all_metrics(layout)
    plan = _plan(layout)
    features = {job.job_id: list(job.features) for job in plan.jobs} if plan is not None else {}
    children = {run.data.tags.get(UNIT_TAG): run for run in client.search_runs(
        [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'", max_results=10_000)}
    model_uris: dict[str, str] = {}
    for m in models:
        model_uris[unit_run_name(m)] = _unit_run(client, experiment_id, parent, children.get(unit_run_name(m)), m,
                                                 layout.model_dir(m.job_id, m.family), features.get(m.job_id))
    _parent_artifacts(client, parent, layout)
    registered: list[RegisteredModel] = []
    if succeeded and spec.register_models and plan is not None:
        for target, best in sorted(best_per_target(models, plan).items()):
            registered.append(_register(client, spec, registered_name(spec, identity, target), model_uris[unit_run_name(best.metrics)], best.metrics,
                                        f"{best.criterion}={best.value:.6g}"))
    client.log_batch(parent, tags=_tags({TAG_PREFIX + "registered": ",".join(f"{r.name}:{r.version}" for r in registered)}))
    client.set_terminated(parent, "FINISHED" if succeeded else "FAILED")
    return TrackingOutcome(state="tracked", mlflow_uri=spec.mlflow_uri, experiment=experiment, mlflow_run_id=parent, units=len(models),
                           registered=registered)


def _experiment(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:  # created meanwhile by another run's Job
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def _parent_run(client: Any, experiment_id: str, identity: RunIdentity) -> str:
    """The MLflow run of this pipeline run: the one tagged with its key (the oldest, should two exist), else a new one."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{identity.key}'", order_by=["attributes.start_time ASC"],
                               max_results=1)
    if found:
        run_id = str(found[0].info.run_id)
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = str(client.create_run(experiment_id, run_name=f"{identity.pipeline}-{identity.run_id}", tags=identity.tags()).info.run_id)
    client.log_batch(run_id, tags=_tags(identity.tags()))
    return run_id


def _tags(tags: dict[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in tags.items()]


def _plan(layout: Layout) -> TrainingPlan | None:
    from trainpipe.io.plan_files import PlanFileError, read_training_plan

    try:
        return read_training_plan(layout.master_training_plan)
    except (PlanFileError, FileNotFoundError):
        return None


def _unit_run(client: Any, experiment_id: str, parent: str, existing: Any, m: ModelMetrics, model_dir: Path, features: list[str] | None) -> str:
    """The nested run of one trained model, logged once: a finished one with its model is kept as it is. Returns its pyfunc model's URI."""
    if existing is not None and existing.info.status == "FINISHED" and MODEL_URI_TAG in existing.data.tags:
        return str(existing.data.tags[MODEL_URI_TAG])
    from mlflow.entities import Metric, Param

    if existing is not None:
        run_id = str(existing.info.run_id)
        client.update_run(run_id, status="RUNNING")
        logged_params = set(existing.data.params)
    else:
        run_id = str(client.create_run(experiment_id, run_name=unit_run_name(m), tags={PARENT_TAG: parent, UNIT_TAG: unit_run_name(m)}).info.run_id)
        logged_params = set()
    now = int(time.time() * 1000)
    params = [Param(k, v) for k, v in flat_params(m, features).items() if k not in logged_params]
    metrics = [Metric(k, v, now, 0) for k, v in flat_metrics(m).items()]
    for start in range(0, max(len(params), len(metrics)), 100):  # MLflow takes at most 100 params and 1000 metrics per batch
        client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100])
    client.log_artifact(run_id, str(model_dir / "metrics.json"))
    uri, native = _log_models(run_id, m, model_dir)
    client.log_batch(run_id, tags=_tags({MODEL_URI_TAG: uri, NATIVE_TAG: native, TAG_PREFIX + "has_timing": str(m.timing is None or m.timing.has_timing)}))
    client.set_terminated(run_id, "FINISHED")
    return uri


def _requirements(model_dir: Path) -> list[str]:
    """The model's libraries pinned as it recorded them (model_meta.json): given, MLflow does not import the model to guess them."""
    meta = json.loads((model_dir / "model_meta.json").read_text())
    return [f"{lib}=={version}" for lib, version in sorted(meta.get("library_versions", {}).items()) if lib != "trainpipe"]


def _log_models(run_id: str, m: ModelMetrics, model_dir: Path) -> tuple[str, str]:
    """(the URI of the pyfunc model, what became of the native-flavour one) logged into run `run_id`."""
    import mlflow

    requirements = _requirements(model_dir)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_FILE), artifacts={"trainpipe_model": str(model_dir)},
                                       pip_requirements=requirements)
        native = _log_native(m.family, model_dir, requirements)
    return str(info.model_uri), native


def _log_native(family: str, model_dir: Path, requirements: list[str]) -> str:
    """The family's model in MLflow's own flavour (name `native`); where there is none, or its library is missing here, why not."""
    flavour = NATIVE_FLAVOURS.get(family)
    if flavour is None:
        return "none: no MLflow flavour for this family; its files are in the model's artifacts (trainpipe_model)"
    module_name, attribute = flavour
    try:
        import importlib

        from trainpipe.families.registry import load_model

        module = importlib.import_module(module_name)
        bare = getattr(load_model(model_dir), attribute)
    except ImportError as exc:
        return f"none: {module_name} cannot load here ({exc})"
    try:
        info = module.log_model(bare, name="native", pip_requirements=requirements)
    except Exception as exc:  # noqa: BLE001 — the flavour is a convenience beside the pyfunc: its failure is said, not fatal
        # A server gone meanwhile fails the next call too, and the whole step is retried then.
        return f"none: {module_name} could not log it ({_reason(exc)})"
    return f"{module_name.removeprefix('mlflow.')}: {info.model_uri}"


def _parent_artifacts(client: Any, parent: str, layout: Layout) -> None:
    """The report and the plan files beside the run (overwritten on a rerun, never duplicated)."""
    for path, folder in ((layout.report_html, None), (layout.master_training_plan, "plan"), (layout.routing_plan_json, "plan"),
                         (layout.rankings_json, "ranking")):
        if path.exists():
            client.log_artifact(parent, str(path), folder)


def _register(client: Any, spec: TrackingSpec, name: str, model_uri: str, m: ModelMetrics, criterion: str) -> RegisteredModel:
    """Register `model_uri` under `name` (once: a version with that source is reused) and point the alias at it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, tags={TAG_PREFIX + "target": m.target})
    except MlflowException:
        pass  # registered by an earlier run
    version = next((v for v in client.search_model_versions(f"name = '{name}'") if v.source == model_uri), None)
    if version is None:
        version = mlflow.register_model(model_uri, name, tags={TAG_PREFIX + "job_id": m.job_id, TAG_PREFIX + "family": m.family,
                                                               TAG_PREFIX + "criterion": criterion})
    client.set_registered_model_alias(name, spec.alias, str(version.version))
    return RegisteredModel(name=name, version=str(version.version), alias=spec.alias, target=m.target, job_id=m.job_id, family=m.family,
                           criterion=criterion)
