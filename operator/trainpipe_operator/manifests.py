"""Pure builders of the objects the operator creates: stage Jobs, the plan ConfigMap, the artifacts claim.

Every value a Job carries comes from the pipeline spec, the run and the operator's config; nothing
here talks to the API server, so `decide` can return whole manifests and tests can read them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any

from trainpipe.contract.cluster import ResourceRequirements, StageSettings
from trainpipe.contract.exitcodes import PERMANENT_EXIT_CODES
from trainpipe.contract.names import (
    ANNOTATION_PLAN_DIGEST,
    API_GROUP,
    API_VERSION,
    CPUS_ENV,
    GPU_RESOURCE,
    KIND,
    KUEUE_QUEUE_LABEL,
    LABEL_ATTEMPT,
    LABEL_FAMILY,
    LABEL_MANAGED_BY,
    LABEL_PIPELINE,
    LABEL_RUN,
    LABEL_STAGE,
    MANAGER,
    NO_FAMILY,
)
from trainpipe.contract.owners import FolderOwner
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import IDENTITY_FIELDS
from trainpipe.contract.stages import STAGES, Pool
from trainpipe.contract.storage import ENDPOINT_ENV, REGION_ENV, SECRET_KEYS
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.naming import AGGREGATE, GROUPS, artifacts_claim, job_name, plan_configmap, spec_configmap

CONTAINER = "trainpipe"
TERMINATION_LOG = "/dev/termination-log"
SCRATCH = "/tmp"  # an emptyDir: the only writable path besides the artifacts (and data) volumes
# The run's spec, from its ConfigMap: one file, never a command-line argument (Linux caps one at 128 KiB,
# and a spec of 5,000 symbols and 2,000 features is about 0.8 MiB).
SPEC_DIR = "/etc/trainpipe/spec"
SPEC_KEY = "spec.json"
# Stage pods run with the least a container can hold; the cluster's restricted Pod Security Standard
# admits them as they are. Pod level: runAsNonRoot (the images run as user 10001; a root image is
# refused by the kubelet instead of running as root) and the runtime's default seccomp profile.
POD_SECURITY_CONTEXT: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
# Container level: no setuid gains, no Linux capabilities (the stages only compute and write files),
# and a read-only root filesystem: a stage writes only its outputs on the artifacts volume and scratch
# files under /tmp (HOME, TMPDIR, MPLCONFIGDIR and the working directory point there), so a stray write
# anywhere else fails loudly instead of being lost with the container.
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                              "capabilities": {"drop": ["ALL"]}}
EPHEMERAL_STORAGE = "ephemeral-storage"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class Owner:
    namespace: str
    name: str
    uid: str

    def folder_arg(self) -> str:
        """The `--owner` argument of the stage commands."""
        return FolderOwner(namespace=self.namespace, name=self.name, uid=self.uid).to_arg()

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "name": self.name, "uid": self.uid, "controller": True}


@dataclass(frozen=True)
class JobIntent:
    """One Job decide wants: which stage, family and attempt, how many units, which plan it trains."""

    stage: str
    family: str | None
    attempt: int
    completions: int
    plan_digest: str | None = None
    keep: tuple[str, ...] = ()  # a run's last step: run folders its pruning must leave (`report --pin`)
    previous_run: str | None = None  # the run id whose folder a stage that compares with the previous run reads (`--previous-run`)
    indexed: bool | None = None  # an Indexed Job (each pod's unit from its index); None: as the stage's row says

    @property
    def is_indexed(self) -> bool:
        return STAGES[self.stage].indexed if self.indexed is None else self.indexed


def data_dir(spec: PipelineSpec) -> str:
    """`data.dir` as the Jobs see it: a relative dir lies inside the data volume's mount path; `data.uri` as given."""
    if spec.data.uri:
        return spec.data.uri
    volume = spec.data.volume
    if volume is None or posixpath.isabs(spec.data.dir):
        return spec.data.dir
    return posixpath.normpath(posixpath.join(volume.mount_path, spec.data.dir))


def pipeline_dir(spec: PipelineSpec, owner: Owner) -> str:
    """`<mountPath>/<namespace>/<pipeline>`: one artifacts volume may serve several namespaces (teams), and two
    pipelines of one name in two of them must never share a folder. (Before, `<mountPath>/<pipeline>`: the
    first stage of a pipeline's first run in this layout moves that folder here, `runner.ownership`.)"""
    if spec.artifacts.uri:  # the same layout under the URI's prefix: no claim, no mount path
        return f"{spec.artifacts.uri.rstrip('/')}/{owner.namespace}/{owner.name}"
    return posixpath.join(spec.artifacts.mount_path, owner.namespace, owner.name)


def run_dir(spec: PipelineSpec, owner: Owner, run: str) -> str:
    """Each run writes under its own folder; earlier runs' models stay beside it."""
    return posixpath.join(pipeline_dir(spec, owner), run)


def job_spec_json(spec: PipelineSpec) -> str:
    """The spec fields the stage commands compute from, with data.dir resolved; scheduling fields stay out."""
    wire = spec.to_wire()
    payload = {name: wire[name] for name in IDENTITY_FIELDS}
    payload["data"] = {k: v for k, v in payload["data"].items() if k != "volume"} | ({} if spec.data.uri else {"dir": data_dir(spec)})
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def stage_args(spec: PipelineSpec, owner: Owner, run: str, intent: JobIntent) -> list[str]:
    """The stage's command (its row in contract.stages) with what one Job of this run needs.

    Every stage gets `--owner`: the first to write records the pipeline folder as this pipeline's, and
    each refuses a folder another pipeline's record names (exit FOLDER_OWNED), so a pipeline deleted and
    created again, or one of the same name elsewhere, never writes into or prunes the other's runs."""
    row = STAGES[intent.stage]
    out = run_dir(spec, owner, run)
    owned = ["--owner", owner.folder_arg()]
    if spec.artifacts.uri:
        # On a store a run folder is a prefix with completion records: no folder to own, no sibling runs to copy
        # from or prune (--owner, --reuse-dir and --keep-runs work on a claim's folders).
        owned, reuse = [], []
    else:
        reuse = ["--reuse-dir", pipeline_dir(spec, owner)]
    if not row.computes:  # renders the run's files; prunes old run folders; logs the run to MLflow (spec.tracking)
        keep = [] if spec.artifacts.uri else ["--keep-runs", str(spec.keep_runs), *(arg for run_id in intent.keep for arg in ("--pin", run_id))]
        return [*row.command, "--output-dir", out, "--run-id", run, "--termination-log", TERMINATION_LOG, *reuse, *keep, *owned, *tracking_args(spec)]
    # Paths in the pod are arguments, not file content: a node that maps volumes to other paths (the local
    # cluster's simulated nodes) rewrites them where they are written; --data-dir overrides the file's data.dir.
    args = [*row.command, "--spec-file", f"{SPEC_DIR}/{SPEC_KEY}", "--data-dir", data_dir(spec), "--output-dir", out, "--run-id", run,
            *reuse, "--termination-log", TERMINATION_LOG, *owned]
    if row.trains:
        if intent.family is None or intent.plan_digest is None:
            raise ValueError(f"a {intent.stage} Job trains one family of one plan: its intent names neither")
        args += ["--family", intent.family]
    if row.compares_previous_run and intent.previous_run is not None:
        args += ["--previous-run", run_dir(spec, owner, intent.previous_run)]
    if intent.family in (GROUPS, AGGREGATE):
        # The spec file leaves out the stages' scheduling settings (they never change a run): the count goes along.
        args += ["--groups", str(getattr(settings_of(spec, intent.stage), "target_groups", 1))]
    if intent.family == AGGREGATE:
        args += ["--aggregate"]  # merges what the units of the stage's groups Job wrote
    elif intent.is_indexed:
        args += ["--unit-index", "$(JOB_COMPLETION_INDEX)"]
    if row.trains:
        args += ["--plan-digest", str(intent.plan_digest)]
    return args


def tracking_args(spec: PipelineSpec) -> list[str]:
    """spec.tracking as the flags of the run's last command, the one that logs the run (`trainpipe report`); none without it."""
    tracking = spec.tracking
    if tracking is None:
        return []
    args = ["--mlflow-uri", tracking.mlflow_uri, "--register-models" if tracking.register_models else "--no-register-models", "--alias", tracking.alias]
    if tracking.experiment:
        args += ["--experiment", tracking.experiment]
    if tracking.model_prefix:
        args += ["--model-prefix", tracking.model_prefix]
    return args


def settings_of(spec: PipelineSpec, stage: str) -> StageSettings:
    return spec.stages.of(stage)


def resources_of(spec: PipelineSpec, stage: str, family: str | None) -> dict[str, Any]:
    settings = settings_of(spec, stage)
    chosen: ResourceRequirements = settings.resources
    per_family = getattr(settings, "families", {}) or {}
    if family is not None and family in per_family:
        chosen = per_family[family]
    out = {k: {name: str(q) for name, q in v.items()} for k, v in chosen.to_wire().items() if v}
    if EPHEMERAL_STORAGE not in out.get("requests", {}) and EPHEMERAL_STORAGE not in out.get("limits", {}):
        # Scratch (/tmp) is node disk: request what it may grow to, so the scheduler places the pod on a node
        # with that much free, rather than the kubelet evicting it (or another team's pod) once the disk fills.
        # A limit set alone is the request too (Kubernetes defaults one to the other), so it is left as it is.
        out.setdefault("requests", {})[EPHEMERAL_STORAGE] = str(settings.scratch_size_limit)
    if STAGES[stage].pool is Pool.GPU and spec.stages.gpu.gpus_per_pod > 0:
        # Extended resources are requested through limits (requests default to them).
        out.setdefault("limits", {})[GPU_RESOURCE] = str(spec.stages.gpu.gpus_per_pod)
    return out


def labels(pipeline: str, run: str, stage: str, family: str | None, attempt: int) -> dict[str, str]:
    return {
        LABEL_PIPELINE: pipeline, LABEL_RUN: run, LABEL_STAGE: stage, LABEL_FAMILY: family or NO_FAMILY,
        LABEL_ATTEMPT: str(attempt), LABEL_MANAGED_BY: MANAGER,
    }


def image_of(spec: PipelineSpec, stage: str, config: OperatorConfig) -> str | None:
    if STAGES[stage].pool is Pool.GPU:
        return spec.images.gpu or config.gpu_image
    return spec.images.cpu or config.cpu_image


def job(spec: PipelineSpec, owner: Owner, run: str, intent: JobIntent, config: OperatorConfig, *, suspend: bool) -> dict[str, Any]:
    """The batch/v1 Job of one stage (and family) of one run."""
    stage, family = intent.stage, intent.family
    settings = settings_of(spec, stage)
    own_labels = labels(owner.name, run, stage, family, intent.attempt)
    job_labels = dict(own_labels)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    annotations = {ANNOTATION_PLAN_DIGEST: intent.plan_digest} if intent.plan_digest else {}
    job_spec: dict[str, Any] = {
        "completions": intent.completions,
        "parallelism": min(intent.completions, getattr(settings, "parallelism", None) or intent.completions),
        "completionMode": "Indexed" if intent.is_indexed else "NonIndexed",
        "suspend": suspend,
        **failure_policy(spec, stage, intent.is_indexed),
        "template": {
            "metadata": {"labels": {**settings.pod_metadata.labels, **own_labels}, "annotations": dict(settings.pod_metadata.annotations)},
            "spec": pod_spec(spec, owner, run, intent, config),
        },
    }
    if settings.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(owner.name, run, stage, family, intent.attempt), "namespace": owner.namespace, "labels": job_labels,
                     "annotations": annotations, "ownerReferences": [owner.reference()]},
        "spec": job_spec,
    }


def failure_policy(spec: PipelineSpec, stage: str, indexed: bool) -> dict[str, Any]:
    """Retries and what stops them: per index for an Indexed Job (one bad unit does not fail its siblings)."""
    settings = settings_of(spec, stage)
    permanent = {"action": "FailIndex" if indexed else "FailJob",
                 "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": list(PERMANENT_EXIT_CODES)}}
    policy: dict[str, Any] = {"podFailurePolicy": {"rules": [
        permanent,
        # Evictions and preemptions are the cluster's doing, not the unit's: they do not use up retries.
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]},
        # A unit's next pod starts only once the last one is gone, so a pod stopping in its grace period never
        # writes beside its successor, which first clears what a killed try left (`io.atomic.remove_stale`).
        # (What Kubernetes sets anyway with a podFailurePolicy; said here because the jobs rely on it.)
        "podReplacementPolicy": "Failed"}
    if indexed:
        policy["backoffLimitPerIndex"] = getattr(settings, "backoff_limit_per_index", settings.backoff_limit)
    else:
        policy["backoffLimit"] = settings.backoff_limit
    return policy


def volumes(spec: PipelineSpec, owner: Owner, run: str, stage: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the pod's volumes, the container's mounts): the data claim if any, the artifacts claim, bounded scratch, the run's spec.

    An object-store data.uri or artifacts.uri has no claim: the stage reads and publishes through the store
    (its staging folder lives in scratch, HOME)."""
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": SCRATCH}]
    pod_volumes: list[dict[str, Any]] = [
        # A bound on scratch: past it the kubelet evicts the pod instead of letting it fill the node's disk.
        {"name": "scratch", "emptyDir": {"sizeLimit": str(settings_of(spec, stage).scratch_size_limit)}},
    ]
    if not spec.artifacts.uri:
        mounts.insert(0, {"name": "artifacts", "mountPath": spec.artifacts.mount_path})
        pod_volumes.insert(0, {"name": "artifacts", "persistentVolumeClaim": {"claimName": spec.artifacts.claim_name or artifacts_claim(owner.name)}})
    if STAGES[stage].computes:
        mounts.append({"name": "spec", "mountPath": SPEC_DIR, "readOnly": True})
        pod_volumes.append({"name": "spec", "configMap": {"name": spec_configmap(owner.name, run), "items": [{"key": SPEC_KEY, "path": SPEC_KEY}]}})
    data_volume = None if spec.data.uri else spec.data.volume
    if data_volume is not None:
        mount = {"name": "data", "mountPath": data_volume.mount_path, "readOnly": data_volume.read_only}
        if data_volume.sub_path:
            mount["subPath"] = data_volume.sub_path
        mounts.insert(0, mount)
        pod_volumes.insert(0, {"name": "data", "persistentVolumeClaim": {"claimName": data_volume.claim_name, "readOnly": data_volume.read_only}})
    return pod_volumes, mounts


def storage_env(spec: PipelineSpec) -> list[dict[str, Any]]:
    """The object store's settings as the AWS_* variables the jobs read: keys by reference to the Secret the spec
    names (never their values: the operator does not read the Secret), endpoint and region as plain values."""
    storage = spec.storage
    if not (spec.data.uri or spec.artifacts.uri):
        return []
    out: list[dict[str, Any]] = []
    if storage.credentials_secret:
        out += [{"name": key, "valueFrom": {"secretKeyRef": {"name": storage.credentials_secret, "key": key}}} for key in SECRET_KEYS]
    if storage.endpoint:
        out.append({"name": ENDPOINT_ENV, "value": storage.endpoint})
    if storage.region:
        out.append({"name": REGION_ENV, "value": storage.region})
    return out


def env(spec: PipelineSpec | None = None) -> list[dict[str, Any]]:
    return [*([] if spec is None else storage_env(spec)),
        # Thread pools follow the container's CPU limit (node allocatable without one), never the node's cores.
        {"name": CPUS_ENV, "valueFrom": {"resourceFieldRef": {"containerName": CONTAINER, "resource": "limits.cpu", "divisor": "1"}}},
        {"name": "HOME", "value": SCRATCH},
        {"name": "TMPDIR", "value": SCRATCH},
        {"name": "MPLCONFIGDIR", "value": SCRATCH},
    ]


def tolerations_of(spec: PipelineSpec, stage: str, config: OperatorConfig) -> list[dict[str, Any]]:
    """The stage's own tolerations, then its pool's (the GPU taint's when asked for, the operator's), without repeats."""
    tolerations = [{k: v for k, v in t.to_wire().items() if v is not None} for t in settings_of(spec, stage).tolerations]
    if STAGES[stage].pool is Pool.GPU:
        extra = [dict(GPU_TOLERATION)] if spec.stages.gpu.tolerate_gpu_taint else []
        extra += [dict(t) for t in config.gpu_tolerations]
    else:
        extra = [dict(t) for t in config.cpu_tolerations]
    for toleration in extra:
        if toleration not in tolerations:
            tolerations.append(toleration)
    return tolerations


def pod_spec(spec: PipelineSpec, owner: Owner, run: str, intent: JobIntent, config: OperatorConfig) -> dict[str, Any]:
    """The pod of one unit: one hardened container running the stage's command, its volumes and placement."""
    stage = intent.stage
    settings = settings_of(spec, stage)
    pod_volumes, mounts = volumes(spec, owner, run, stage)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image_of(spec, stage, config) or "",
        # No command: the image's entrypoint runs `trainpipe` under an init (tini) that forwards SIGTERM to
        # the stage and its worker and reaps them, so a deleted pod stops cleanly within its grace period.
        "args": stage_args(spec, owner, run, intent),
        # The images set no WORKDIR: files a library drops in the working directory land in scratch.
        "workingDir": SCRATCH,
        "env": env(spec),
        "resources": resources_of(spec, stage, intent.family),
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
    }
    if spec.images.pull_policy:
        container["imagePullPolicy"] = spec.images.pull_policy
    if not STAGES[stage].computes and spec.tracking is not None and spec.tracking.credentials_secret:
        # The tracking server's credentials reach only the pod that logs the run, from the Secret, never through the spec or args.
        container["envFrom"] = [{"secretRef": {"name": spec.tracking.credentials_secret}}]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",  # podFailurePolicy needs it; retries are the Job's, per index
        # No API token: stages never call the API server (what a pod tells the operator goes in its
        # termination message), so a compromised stage cannot act as its ServiceAccount.
        "automountServiceAccountToken": False,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "containers": [container],
        "volumes": pod_volumes,
    }
    gpu_pool = STAGES[stage].pool is Pool.GPU
    node_selector = dict(settings.node_selector) or dict(config.gpu_node_selector if gpu_pool else config.cpu_node_selector)
    if node_selector:
        pod["nodeSelector"] = node_selector
    tolerations = tolerations_of(spec, stage, config)
    if tolerations:
        pod["tolerations"] = tolerations
    if settings.affinity:
        pod["affinity"] = dict(settings.affinity)
    if spec.service_account_name or config.job_service_account:
        pod["serviceAccountName"] = spec.service_account_name or config.job_service_account
    if spec.priority_class_name:
        pod["priorityClassName"] = spec.priority_class_name
    return pod


def spec_config_map(spec: PipelineSpec, owner: Owner, run: str) -> dict[str, Any]:
    """`<pipeline>-<run>-spec`: the spec every pod of the run reads (`--spec-file`). Immutable: a run id is a
    digest of these fields, so the content of a name never changes (and the kubelet need not watch it)."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
        "metadata": {"name": spec_configmap(owner.name, run), "namespace": owner.namespace,
                     "labels": {LABEL_PIPELINE: owner.name, LABEL_RUN: run, LABEL_MANAGED_BY: MANAGER},
                     "ownerReferences": [owner.reference()]},
        "data": {SPEC_KEY: job_spec_json(spec)},
    }


def spec_digest(spec: PipelineSpec) -> str:
    return hashlib.sha256(job_spec_json(spec).encode()).hexdigest()


def plan_config_map(owner: Owner, run: str, digest: str, path: str, units: dict[str, int]) -> dict[str, Any]:
    """`<pipeline>-plan`: what the plan Job reported, the source the training Jobs fan out from."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": plan_configmap(owner.name), "namespace": owner.namespace,
                     "labels": {LABEL_PIPELINE: owner.name, LABEL_RUN: run, LABEL_MANAGED_BY: MANAGER},
                     "ownerReferences": [owner.reference()]},
        "data": {"run": run, "digest": digest, "path": path, "units": json.dumps(units, sort_keys=True)},
    }


def artifacts_claim_manifest(spec: PipelineSpec, owner: Owner, config: OperatorConfig) -> dict[str, Any]:
    """The claim the operator creates when the spec names none: labelled, owned only with retainPolicy Delete."""
    a = spec.artifacts
    claim: dict[str, Any] = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": artifacts_claim(owner.name), "namespace": owner.namespace,
                     "labels": {LABEL_PIPELINE: owner.name, LABEL_MANAGED_BY: MANAGER}},
        # Written by pods on several nodes at once (select and training fan out).
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": str(a.size or config.artifacts_size)}}},
    }
    if a.storage_class_name:
        claim["spec"]["storageClassName"] = a.storage_class_name
    if a.retain_policy == "Delete":
        claim["metadata"]["ownerReferences"] = [owner.reference()]
    return claim
