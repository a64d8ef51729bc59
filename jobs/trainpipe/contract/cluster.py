"""The parts of a pipeline spec only a cluster run reads: volumes, images, per-stage scheduling, run policy.

`trainpipe run` ignores all of it; the operator turns it into Jobs. Kubernetes types that the operator
passes through unchanged (affinity) stay free-form; the ones users get wrong often (resources,
tolerations, labels) are typed so the API server rejects a typo with the field's name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from trainpipe.contract import sizes
from trainpipe.contract.base import Contract
from trainpipe.contract.quantity import SPEC_PATTERN, spec_quantity
from trainpipe.contract.storage import ObjectUri

# A resource quantity as Kubernetes writes it: 2, "500m", "4Gi".
Quantity = Annotated[int | str, AfterValidator(spec_quantity),
                     Field(json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": SPEC_PATTERN, "maxLength": sizes.QUANTITY})]
DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
AbsolutePath = Annotated[str, Field(min_length=1, max_length=sizes.PATH, pattern=r"^/")]
LabelMap = dict[str, sizes.LabelValue]  # keys: Kubernetes checks them on the Job (a CRD schema cannot bound map keys)


class VolumeSpec(Contract):
    """A PersistentVolumeClaim mounted into every Job of the pipeline."""

    claim_name: DnsSubdomain = Field(description="Name of an existing PersistentVolumeClaim in the pipeline's namespace.")
    mount_path: AbsolutePath = Field("/data", description="Where the claim is mounted in the Jobs' containers.")
    read_only: bool = Field(True, description="Mount read-only (the stages only read the bars).")
    sub_path: sizes.Path | None = Field(None, description="Sub-folder of the claim to mount instead of its root.")


class ArtifactsSpec(Contract):
    model_config = Contract.model_config | {"json_schema_extra": {"x-kubernetes-validations": [{
        "rule": "!(has(self.claimName) && (has(self.storageClassName) || has(self.size)))",
        "message": "artifacts: give claimName (an existing claim) or storageClassName/size (a claim the operator creates), not both",
    }]}}
    uri: ObjectUri | None = Field(None, description="Object-store location of the run outputs (s3://bucket/prefix; each run under <uri>/<namespace>/<pipeline>/<run>/): no claim is made or mounted.")
    claim_name: DnsSubdomain | None = Field(None, description="An existing ReadWriteMany claim for the run outputs; empty = the operator creates <pipeline>-artifacts.")
    storage_class_name: sizes.Name | None = Field(None, description="StorageClass of the claim the operator creates (empty = the cluster default).")
    size: Quantity | None = Field(None, description="Size of the claim the operator creates (default 10Gi).")
    mount_path: AbsolutePath = Field("/artifacts", description="Where the artifacts claim is mounted; each run writes under <mountPath>/<pipeline>/<run>/.")
    retain_policy: Literal["Retain", "Delete"] = Field("Retain", description="Delete: an operator-created claim is deleted with the pipeline. Retain (default): trained models outlive the pipeline.")


class ImagesSpec(Contract):
    cpu: Annotated[str, Field(max_length=sizes.IMAGE)] | None = Field(None, description="Image of the rank, select, plan, CPU-training and report Jobs (default: the operator's --cpu-image).")
    gpu: Annotated[str, Field(max_length=sizes.IMAGE)] | None = Field(None, description="Image of the GPU-training Jobs (default: the operator's --gpu-image). Set it to the cpu image to train GPU families on it.")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(None, description="imagePullPolicy of every container.")


class ResourceRequirements(Contract):
    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=sizes.RESOURCES, description="e.g. {cpu: 2, memory: 4Gi}.")
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=sizes.RESOURCES, description="The CPU limit also sets the stage's thread count.")


class Toleration(Contract):
    key: sizes.LabelKey | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: sizes.LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class PodMetadata(Contract):
    labels: LabelMap = Field(default_factory=dict, max_length=sizes.ENTRIES, description="Added to the stage's pods (cost labels, …).")
    annotations: dict[str, sizes.AnnotationValue] = Field(default_factory=dict, max_length=sizes.ENTRIES, description="Added to the stage's pods (sidecar injection, …).")


class StageSettings(Contract):
    """Scheduling of one stage's Jobs. Changing it never starts a new run: it applies to Jobs created from then on."""

    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    node_selector: dict[str, sizes.LabelValue] = Field(default_factory=dict, max_length=sizes.ENTRIES)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=sizes.ENTRIES)
    affinity: dict[str, Any] = Field(default_factory=dict, description="A core/v1 Affinity, passed to the pods as written.")
    active_deadline_seconds: int | None = Field(None, ge=1, description="Bound on each of the stage's Jobs.")
    start_timeout_seconds: int = Field(600, ge=1, le=7 * 24 * 3600, description="A stage none of whose pods has started this long after "
                                       "its Jobs were created is Stalled (StartTimeout) with what it waits on; Jobs a queue holds suspended do not count.")
    backoff_limit: int = Field(2, ge=0, le=100, description="Pod retries of a Job (per index where backoffLimitPerIndex is used).")
    max_evictions_per_unit: int = Field(3, ge=0, le=100, description="Times one unit's pod may be evicted, preempted or lost with its node "
                                        "(each runs the unit again without using up its retries); one more fails the stage (EvictedTooOften) "
                                        "and stops its Jobs.")
    pod_metadata: PodMetadata = Field(default_factory=PodMetadata)
    scratch_size_limit: Quantity = Field("2Gi", description="Size limit of the pods' /tmp (an emptyDir, the only writable path besides the volumes): "
                                                           "the kubelet evicts a pod whose scratch files outgrow it. Each pod requests "
                                                           "this much ephemeral storage unless its resources set ephemeral-storage.")


class RankSettings(StageSettings):
    target_groups: int = Field(1, ge=1, le=64, description="Rank in this many groups of targets, each scored by its own unit (`trainpipe rank "
                               "--unit-index I --groups N`, one pod each of an Indexed Job), then one small aggregate step merges them (the evidence "
                               "gate and the top N over all targets). 1 (default) ranks every target in one Job. Each unit reads the same rows, so "
                               "the ranking is the same either way.")


class FanOutSettings(StageSettings):
    parallelism: int | None = Field(None, ge=1, le=10_000, description="Pods of one Job at a time (default: all its units).")
    backoff_limit_per_index: int = Field(2, ge=0, le=100, description="Retries of one unit: a bad unit fails only its own index.")


class TrainSettings(FanOutSettings):
    families: dict[str, ResourceRequirements] = Field(default_factory=dict, max_length=sizes.FAMILIES, description="Per-family resources that replace the stage's (e.g. {catboost: {limits: {cpu: 8}}}).")


class GpuSettings(TrainSettings):
    gpus_per_pod: int = Field(1, ge=0, le=16, description="nvidia.com/gpu requested by each GPU pod.")
    tolerate_gpu_taint: bool = Field(True, description="Add a toleration for the nvidia.com/gpu taint GPU nodes usually carry.")


class StagesSpec(Contract):
    rank: RankSettings = Field(default_factory=RankSettings)
    select: FanOutSettings = Field(default_factory=FanOutSettings)
    plan: StageSettings = Field(default_factory=StageSettings)
    cpu: TrainSettings = Field(default_factory=TrainSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    report: StageSettings = Field(default_factory=StageSettings)

    def of(self, stage: str) -> StageSettings:
        """The settings of `stage`: its block here, or the defaults for a stage this spec has no block for."""
        settings = getattr(self, stage, None) if stage in type(self).model_fields else None
        return settings if isinstance(settings, StageSettings) else StageSettings()


class ScheduleSpec(Contract):
    """Retrains without a commit: a new run at each fire time, even when the spec is unchanged (the data grew)."""

    cron: str = Field(min_length=9, max_length=sizes.CRON, description="Five-field cron expression, e.g. '0 2 * * 1-5' (02:00 on weekdays).")
    time_zone: str = Field("UTC", max_length=sizes.TIME_ZONE, description="IANA time zone the cron expression is read in, e.g. Europe/London.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a five-field cron expression (minute hour day-of-month month day-of-week), e.g. '0 2 * * *'")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name, e.g. UTC or Europe/London") from None
        return value
