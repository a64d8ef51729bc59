"""`spec.tracking` (where a run is tracked in MLflow and its best models registered) and what tracking a run came to.

Read by the CLI (`trainpipe run`, `trainpipe report`), the tracking step (`trainpipe.tracking`) and the
operator, which passes the settings to the run's last Job. Not part of a run's identity
(`contract.runs.IDENTITY_FIELDS`): pointing a pipeline at another tracking server reruns nothing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from trainpipe.contract import sizes
from trainpipe.contract.base import Contract, SnakeContract

DEFAULT_ALIAS = "champion"
# MLflow refuses these as aliases: they would shadow `models:/<name>/latest` and version numbers.
_RESERVED_ALIASES = ("latest",)

# A name MLflow accepts for an experiment or a registered model and that stays readable in a URI.
ExperimentName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/ ]*$")]
# Registered-model names may not hold '/' or ':' (MLflow refuses them); the target's name is appended to this.
ModelPrefix = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class TrackingSpec(Contract):
    """Track each run in an MLflow tracking server: one MLflow run per pipeline run, a nested run per trained model."""

    mlflow_uri: Annotated[str, Field(min_length=1, max_length=sizes.PATH, pattern=r"^((https?|file|databricks)://|sqlite:///)|^databricks$")] = Field(
        description="The tracking server (http(s)://host:port), or a local store (sqlite:///path.db). Its credentials, if any, come from "
                    "credentialsSecret, never from the spec.")
    experiment: ExperimentName | None = Field(None, description="MLflow experiment of the runs (created when missing); empty = trainpipe/<namespace>/<pipeline> "
                                                       "(trainpipe/<pipeline> for a local run).")
    register_models: bool = Field(True, description="On a successful run, register the best model of each target (by the plan's criterion: the "
                                  "holdout IC for returns, AUC for labels; models without timing are never picked) as <prefix>-<target> and point "
                                  "the alias at it. A failed run registers nothing.")
    alias: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")] = Field(
        DEFAULT_ALIAS, description="The registered-model alias moved to each newly registered best model (models:/<name>@<alias>).")
    model_prefix: ModelPrefix | None = Field(None, description="Registered models are named <modelPrefix>-<target>; empty = the pipeline name (<namespace>-<pipeline> on a cluster).")
    credentials_secret: sizes.Name | None = Field(None, description="Cluster runs: a Secret in the pipeline's namespace whose keys "
                                                  "(MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) become "
                                                  "the environment of the Job that logs the run.")

    @field_validator("alias")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in _RESERVED_ALIASES or (value[:1] in "vV" and value[1:].isdigit()):
            raise ValueError(f"alias {value!r} is reserved by MLflow (latest, v<number>); choose another, e.g. {DEFAULT_ALIAS}")
        return value


class RegisteredModel(SnakeContract):
    """One registered best model: its name, version and alias, and the unit it came from."""

    name: str
    version: str
    alias: str
    target: str
    job_id: str
    family: str
    criterion: str = Field(description="The holdout figure it was chosen by (ic or auc) and its value, e.g. 'ic=0.031'")


class TrackingOutcome(SnakeContract):
    """What tracking a run came to: written to `.trainpipe/tracking.json`, printed by `trainpipe run`, in the last Job's report."""

    state: Literal["tracked", "not tracked"]
    reason: str = Field("", description="Why not tracked (the server's or the client's error, after the retries)")
    mlflow_uri: str
    experiment: str
    mlflow_run_id: str | None = None
    units: int = Field(0, ge=0, description="Trained models logged as nested runs")
    registered: list[RegisteredModel] = Field(default_factory=list)

    def summary(self) -> TrackingSummary:
        """The few words of it that fit a pod's termination message (the report Job's, which a person or the operator reads)."""
        return TrackingSummary(state=self.state, reason=self.reason[:_REASON_CHARS] or None, mlflow_run_id=self.mlflow_run_id,
                               registered=[f"{r.name}:{r.version}" for r in self.registered][:_NAMES] or None)

    def line(self) -> str:
        """One line for a person: where it went, or why it did not."""
        if self.state == "not tracked":
            return f"not tracked in MLflow ({self.mlflow_uri}): {self.reason}"
        names = ", ".join(f"{r.name} v{r.version} @{r.alias}" for r in self.registered)
        return (f"tracked in MLflow {self.mlflow_uri}, experiment {self.experiment!r}, run {self.mlflow_run_id} ({self.units} models)"
                + (f"; registered {names}" if names else ""))


# The termination message holds 4 KiB, the report's other fields included.
_REASON_CHARS = 600
_NAMES = 20


class TrackingSummary(Contract):
    """`tracking` of the report's termination line: tracked or not (and why), the MLflow run, the models registered as name:version."""

    model_config = Contract.model_config | {"extra": "ignore"}
    state: Literal["tracked", "not tracked"]
    reason: str | None = Field(None, exclude_if=lambda v: v is None)
    mlflow_run_id: str | None = Field(None, exclude_if=lambda v: v is None)
    registered: list[str] | None = Field(None, exclude_if=lambda v: v is None)
