"""Read one pipeline and its children from the API server into the snapshots `decide` takes.

Reads go to the API server (label-selected LISTs, consistent reads), not to a watch cache: after a
restart or a missed event the snapshot is still the cluster's truth, which is what keeps `decide`
from creating a Job twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from trainpipe.contract.names import LABEL_PIPELINE, LABEL_RUN
from trainpipe_operator.kubeapi import Kube, path, pipelines_path
from trainpipe_operator.naming import artifacts_claim, plan_configmap
from trainpipe_operator.observed import Observed, PipelineView, needs_pods, parse_job, parse_pipeline, parse_plan_configmap, parse_pod
from trainpipe_operator.schedule import current_run


def read_pipeline(kube: Kube, namespace: str, name: str) -> tuple[dict[str, Any], PipelineView] | None:
    obj = kube.get_or_none(pipelines_path(namespace, name))
    if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None  # gone or going: ownerReferences clean up its Jobs
    return obj, parse_pipeline(obj)


def observe(kube: Kube, view: PipelineView, now: datetime) -> Observed:
    ns, name = view.namespace, view.name
    selector = f"{LABEL_PIPELINE}={name}"
    jobs = [j for j in (parse_job(o) for o in kube.get(path(ns, "jobs", group="batch/v1"), labelSelector=selector)["items"]) if j is not None]
    pods: list[Any] = []
    missing: list[str] = []
    artifacts_exists = True
    if view.spec is not None:
        run, _, _ = current_run(view.spec, view.rerun_token, view.status.schedule, now)
        # Only the current run's pods, and only when they can add to what the Jobs show (see needs_pods).
        if needs_pods(jobs, run, view.status):
            pods = [p for p in (parse_pod(o) for o in kube.get(path(ns, "pods"), labelSelector=f"{selector},{LABEL_RUN}={run}")["items"]) if p is not None]
        volume = view.spec.data.volume
        if volume is not None and kube.get_or_none(path(ns, "persistentvolumeclaims", volume.claim_name)) is None:
            missing.append(volume.claim_name)
        named = view.spec.artifacts.claim_name
        if named is not None:
            if kube.get_or_none(path(ns, "persistentvolumeclaims", named)) is None:
                missing.append(named)
        else:
            artifacts_exists = kube.get_or_none(path(ns, "persistentvolumeclaims", artifacts_claim(name))) is not None
    plan = parse_plan_configmap(kube.get_or_none(path(ns, "configmaps", plan_configmap(name))))
    return Observed(jobs=tuple(jobs), pods=tuple(pods), plan=plan, missing_claims=tuple(missing), artifacts_claim_exists=artifacts_exists)
