"""Children are the pipeline's only with its controller UID: a Job or ConfigMap another controller (or none) holds
is never counted, deleted, suspended or replaced, and one holding a name the pipeline needs stalls it (NameTaken)
while staying byte for byte as it was. Artefact paths hold the namespace, and every stage is told its owner."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from operator_builders import NAMESPACE, PIPELINE, UID, pipeline_view, succeeded_stages
from trainpipe.contract.names import LABEL_PIPELINE, LABEL_RUN, Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.stages import STAGES
from trainpipe.contract.status import PipelineStatus, PlanRef
from trainpipe.kube.client import ApiError
from trainpipe_operator.act import act
from trainpipe_operator.cache import ChildCache
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import Decision, decide
from trainpipe_operator.manifests import JobIntent, Owner, stage_args
from trainpipe_operator.metrics import Metrics
from trainpipe_operator.naming import job_name, plan_configmap, spec_configmap
from trainpipe_operator.observe import observe
from trainpipe_operator.observed import Controller, ForeignChild, Observed, ObservedJob, ObservedPlan
from trainpipe_operator.policies.ownership import NAME_TAKEN_RECHECK_SECONDS

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
SPEC = PipelineSpec.model_validate({"data": {"dir": "example"}, "training": {"families": ["lightgbm"]}})
RUN = run_id(SPEC)
OTHER = Controller("TrainingPipeline", PIPELINE, "uid-old")  # the same name, deleted and created again
RANK = job_name(PIPELINE, RUN, Stage.RANK, None, 0)
PLAN_MAP, SPEC_MAP = plan_configmap(PIPELINE), spec_configmap(PIPELINE, RUN)


def decide_with(*foreign: ForeignChild, status: PipelineStatus | None = None, **observed: Any) -> Decision:
    return decide(pipeline_view(SPEC, status), Observed(foreign=foreign, **observed), CONFIG, NOW)


def stalled(d: Decision) -> tuple[str, str, str]:
    c = next(c for c in d.status.conditions if c.type == "Stalled")
    return c.status, c.reason, c.message


def made(d: Decision) -> list[str]:
    return sorted(m["metadata"]["name"] for m in [*d.create, *d.upsert])


@pytest.mark.parametrize(("foreign", "taken"), [
    # A ConfigMap the pipeline needs, made by someone else (no controller) or left by an earlier pipeline of the name.
    (ForeignChild("ConfigMap", PLAN_MAP, None), PLAN_MAP),
    (ForeignChild("ConfigMap", SPEC_MAP, OTHER), SPEC_MAP),
    # A Job of the name the pipeline is about to create.
    (ForeignChild("Job", RANK, OTHER), RANK),
])
def test_a_name_the_pipeline_needs_held_by_another_object_stalls_it_and_nothing_is_created(foreign: ForeignChild, taken: str):
    d = decide_with(foreign)
    status, reason, message = stalled(d)
    assert (status, reason) == ("True", "NameTaken") and d.status.message == message
    assert f"{foreign.kind} {NAMESPACE}/{taken} is not this pipeline's" in message and "left unchanged" in message
    assert f"kubectl delete {foreign.kind.lower()} {taken} -n {NAMESPACE}" in message
    assert foreign.whose() in message
    assert made(d) == [] and d.delete_jobs == () and d.suspend_jobs == ()
    assert [(e.type, e.reason) for e in d.events if e.reason == "NameTaken"] == [("Warning", "NameTaken")]
    assert d.requeue_after == NAME_TAKEN_RECHECK_SECONDS, "an unlabelled object's deletion brings no event: look again"


def test_while_the_name_stays_taken_the_stall_is_not_announced_again():
    first = decide_with(ForeignChild("ConfigMap", PLAN_MAP, None))
    again = decide_with(ForeignChild("ConfigMap", PLAN_MAP, None), status=first.status)
    assert stalled(again) == stalled(first) and not [e for e in again.events if e.reason == "NameTaken"]


def test_once_the_object_is_gone_the_run_goes_on():
    first = decide_with(ForeignChild("ConfigMap", PLAN_MAP, None))
    after = decide_with(status=first.status)
    assert stalled(after)[0] == "False" and RANK in made(after) and SPEC_MAP in made(after)


def test_a_foreign_object_whose_name_is_not_needed_changes_nothing():
    d = decide_with(ForeignChild("Job", job_name(PIPELINE, "r-someone-else", Stage.RANK, None, 0), OTHER))
    assert stalled(d)[0] == "False" and RANK in made(d)


def test_the_plan_configmap_is_restored_when_ours_but_never_replaced_when_another_holds_the_name():
    ref = PlanRef(digest="d" * 64, path=f"/artifacts/{NAMESPACE}/{PIPELINE}/{RUN}/plan.json", units={"lightgbm": 2})
    status = PipelineStatus(run_id=RUN, run_generation=1, started_at="2026-12-01T11:00:00Z", selected_targets=1, plan=ref,
                            stages=succeeded_stages(Stage.RANK, Stage.SELECT, Stage.PLAN))
    ours = decide_with(status=status, spec_map_exists=True)
    assert [m["metadata"]["name"] for m in ours.upsert] == [PLAN_MAP], "deleted or edited: written back"
    theirs = decide_with(ForeignChild("ConfigMap", PLAN_MAP, None), status=status, spec_map_exists=True)
    assert theirs.upsert == () and theirs.create == () and stalled(theirs)[1] == "NameTaken"


# ---- observe: only children with the pipeline's controller UID are its own ----------------------------


def _owner_ref(uid: str) -> dict[str, Any]:
    return {"apiVersion": "trainpipe.io/v1alpha1", "kind": "TrainingPipeline", "name": PIPELINE, "uid": uid, "controller": True}


def _job(name: str, uid: str | None, run: str = RUN) -> dict[str, Any]:
    labels = {LABEL_PIPELINE: PIPELINE, LABEL_RUN: run, "trainpipe.io/stage": "rank", "trainpipe.io/attempt": "0"}
    return {"kind": "Job", "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": "10", "labels": labels,
                                        "ownerReferences": [_owner_ref(uid)] if uid else []},
            "spec": {"completions": 1}, "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}


def _configmap(name: str, uid: str | None, labelled: bool) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": "7", "labels": {LABEL_PIPELINE: PIPELINE} if labelled else {},
                         "ownerReferences": [_owner_ref(uid)] if uid else []},
            "data": {"note": "someone's own settings"}}


class FakeKube:
    """The API server of one namespace: objects by path; records every request."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {self.path_of(o): o for o in objects}
        self.requests: list[tuple[str, str]] = []

    @staticmethod
    def path_of(obj: dict[str, Any]) -> str:
        plural = {"Job": "apis/batch/v1", "ConfigMap": "api/v1"}[obj["kind"]]
        kind = {"Job": "jobs", "ConfigMap": "configmaps"}[obj["kind"]]
        return f"/{plural}/namespaces/{NAMESPACE}/{kind}/{obj['metadata']['name']}"

    def get(self, resource: str, labelSelector: str = "", fieldSelector: str = "", **_: Any) -> dict[str, Any]:  # noqa: N803 -- the API's parameter names
        self.requests.append(("list", resource + (f"?{fieldSelector}" if fieldSelector else "")))
        wanted = labelSelector.split(",")[0].split("=")[-1] if labelSelector else None
        named = fieldSelector.removeprefix("metadata.name=") if fieldSelector else None
        items = [o for p, o in self.objects.items() if p.startswith(resource + "/")
                 and (wanted is None or (o["metadata"].get("labels") or {}).get(LABEL_PIPELINE) == wanted)
                 and (named is None or o["metadata"]["name"] == named)]
        return {"metadata": {"resourceVersion": "20"}, "items": copy.deepcopy(items)}

    def get_or_none(self, resource: str) -> dict[str, Any] | None:
        self.requests.append(("get", resource))
        if "/persistentvolumeclaims/" in resource:
            return {"metadata": {"name": resource.rsplit("/", 1)[-1]}}
        return copy.deepcopy(self.objects.get(resource))

    def create(self, collection: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any] | None:
        self.requests.append(("create", f"{collection}/{body['metadata']['name']}"))
        where = f"{collection}/{body['metadata']['name']}"
        if where in self.objects:
            return None
        self.objects[where] = dict(body, metadata=dict(body["metadata"], resourceVersion="30"))
        return copy.deepcopy(self.objects[where])

    def replace(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(("replace", resource))
        if resource not in self.objects and not resource.endswith("/status"):
            raise ApiError("PUT", resource, 404, {})
        self.objects[resource] = body
        return body


def _view(status: PipelineStatus | None = None):
    return pipeline_view(SPEC, status)


def test_observe_counts_only_jobs_with_the_pipelines_uid_and_names_the_others():
    kube = FakeKube(_job(RANK, "uid-old"), _job("demo-mine", UID))
    observed = observe(kube, ChildCache(), _view(), NOW)  # type: ignore[arg-type]
    assert [j.name for j in observed.jobs] == ["demo-mine"]
    assert observed.foreign == (ForeignChild("Job", RANK, OTHER),)


@pytest.mark.parametrize("labelled", [True, False])
def test_observe_finds_a_plan_configmap_name_held_by_an_object_without_a_controller_labelled_or_not(labelled: bool):
    kube = FakeKube(_configmap(PLAN_MAP, None, labelled))
    observed = observe(kube, ChildCache(), _view(), NOW)  # type: ignore[arg-type]
    assert observed.plan is None and ForeignChild("ConfigMap", PLAN_MAP, None) in observed.foreign


def test_a_running_pipeline_asks_for_no_configmap_by_name():
    kube = FakeKube(_configmap(SPEC_MAP, UID, True))
    cache = ChildCache()
    observed = observe(kube, cache, _view(PipelineStatus(run_id=RUN)), NOW)  # type: ignore[arg-type]
    assert observed.spec_map_exists and observed.foreign == ()
    assert not [r for r in kube.requests if "metadata.name=" in r[1]], "its spec ConfigMap is listed: the run has started"


def test_an_unowned_plan_configmap_stalls_the_pipeline_and_is_left_byte_for_byte():
    """A full pass (observe → decide → act), twice: the ConfigMap that was there before the pipeline is never written."""
    theirs = _configmap(PLAN_MAP, None, labelled=False)
    kube = FakeKube(theirs)
    before = json.dumps(theirs, sort_keys=True)
    cache = ChildCache()
    view = _view()
    for _ in range(2):
        observed = observe(kube, cache, view, NOW)  # type: ignore[arg-type]
        d = decide(view, observed, CONFIG, NOW)
        act(kube, {"metadata": {"name": PIPELINE, "namespace": NAMESPACE}, "status": {}}, view, d, Metrics(), cache,  # type: ignore[arg-type]
            post=lambda *_: None)
        view = pipeline_view(SPEC, d.status)
    assert stalled(d)[1] == "NameTaken"
    assert json.dumps(kube.objects[FakeKube.path_of(theirs)], sort_keys=True) == before
    assert not [r for r in kube.requests if r[0] in ("create", "replace") and "/configmaps/" in r[1] or "/jobs/" in r[1] and r[0] == "create"]


def test_act_never_replaces_a_configmap_another_controller_holds_even_when_observe_missed_it():
    """The object appeared between observe and act: the upsert meets it on create and leaves it."""
    theirs = _configmap(PLAN_MAP, "uid-old", labelled=True)
    kube = FakeKube(theirs)
    before = json.dumps(theirs, sort_keys=True)
    ref = PlanRef(digest="d" * 64, path="/p", units={"lightgbm": 1})
    status = PipelineStatus(run_id=RUN, plan=ref, stages=succeeded_stages(Stage.RANK, Stage.SELECT, Stage.PLAN))
    d = decide(_view(status), Observed(spec_map_exists=True, plan=ObservedPlan(RUN, "e" * 64, "/p", {})), CONFIG, NOW)
    assert [m["metadata"]["name"] for m in d.upsert] == [PLAN_MAP]
    act(kube, {"metadata": {"name": PIPELINE, "namespace": NAMESPACE}, "status": {}}, _view(status), d, Metrics(), ChildCache(),  # type: ignore[arg-type]
        post=lambda *_: None)
    assert json.dumps(kube.objects[FakeKube.path_of(theirs)], sort_keys=True) == before
    assert ("replace", FakeKube.path_of(theirs)) not in kube.requests
    assert not [r for r in kube.requests if r[0] == "get"], "the operator's role has no get on ConfigMaps: it lists them by name"


def test_act_restores_its_own_edited_plan_configmap_at_the_version_it_listed_without_a_get():
    """An edit of the pipeline's own plan ConfigMap: the create meets it, a LIST by name shows it is the
    pipeline's, and it is replaced at that version (a GET would be refused: the role only lists ConfigMaps)."""
    ours = dict(_configmap(PLAN_MAP, UID, labelled=True), data={"digest": "edited by hand"})
    kube = FakeKube(ours)
    ref = PlanRef(digest="d" * 64, path="/p", units={"lightgbm": 1})
    status = PipelineStatus(run_id=RUN, plan=ref, stages=succeeded_stages(Stage.RANK, Stage.SELECT, Stage.PLAN))
    d = decide(_view(status), Observed(spec_map_exists=True, plan=None), CONFIG, NOW)
    act(kube, {"metadata": {"name": PIPELINE, "namespace": NAMESPACE}, "status": {}}, _view(status), d, Metrics(), ChildCache(),  # type: ignore[arg-type]
        post=lambda *_: None)
    restored = kube.objects[FakeKube.path_of(ours)]
    assert restored["data"]["digest"] == "d" * 64 and restored["metadata"]["resourceVersion"] == "7"
    assert not [r for r in kube.requests if r[0] == "get"]


# ---- paths and the owner every stage is told ------------------------------------------------------


def test_every_stage_writes_under_the_namespace_and_is_told_its_owner():
    owner = Owner(NAMESPACE, PIPELINE, UID)
    for stage, row in STAGES.items():
        intent = JobIntent(stage, "lightgbm" if row.trains else None, 0, 1, "d" * 64 if row.trains else None)
        args = stage_args(SPEC, owner, RUN, intent)
        assert args[args.index("--output-dir") + 1] == f"/artifacts/{NAMESPACE}/{PIPELINE}/{RUN}", stage
        assert args[args.index("--reuse-dir") + 1] == f"/artifacts/{NAMESPACE}/{PIPELINE}", stage
        assert args[args.index("--owner") + 1] == f"{NAMESPACE}/{PIPELINE}/{UID}", stage


def test_status_points_at_the_namespaced_run_folder():
    d = decide(_view(), Observed(), CONFIG, NOW)
    assert d.status.output_path == f"/artifacts/{NAMESPACE}/{PIPELINE}/{RUN}"




def test_a_stage_refused_by_the_folders_owner_stalls_the_pipeline_with_the_owner_and_how_to_adopt_it():
    """The report pod's own termination line (exit 9), with names at their longest, reaches status.message whole."""
    from pathlib import Path

    from trainpipe.cli.termination import failure_line
    from trainpipe.contract.exitcodes import ExitCode
    from trainpipe.contract.owners import FolderOwner
    from trainpipe.kube.pods import ObservedPod
    from trainpipe.runner.ownership import refusal

    ns, name = "n" * 63, "p" * 40
    old, new = (FolderOwner(namespace=ns, name=name, uid=u) for u in ("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4"))
    line = failure_line("report", ExitCode.FOLDER_OWNED, refusal(Path(f"/artifacts/{ns}/{name}"), old, new))
    spec = SPEC
    view = dataclasses.replace(pipeline_view(spec, PipelineStatus(
        run_id=RUN, run_generation=1, started_at="2026-12-01T11:00:00Z", selected_targets=1,
        plan=PlanRef(digest="d" * 64, path="/p", units={"lightgbm": 1}),
        stages=succeeded_stages(Stage.RANK, Stage.SELECT, Stage.PLAN, Stage.CPU, Stage.GPU))), namespace=ns, name=name, uid=new.uid)
    report = job_name(name, RUN, Stage.REPORT, None, 0)
    failed = ObservedJob(name=report, run=RUN, stage=Stage.REPORT, family=None, attempt=0, completions=1, indexed=False,
                         failed=1, failed_condition="PodFailurePolicy: Container trainpipe failed with exit code 9 matching FailJob rule at index 0")
    pod = ObservedPod(name=f"{report}-abcde", job=report, index=None, phase="Failed", exit_code=9, message=line)
    d = decide(view, Observed(jobs=(failed,), pods=(pod,), spec_map_exists=True, plan=ObservedPlan(RUN, "d" * 64, "/p", {"lightgbm": 1})), CONFIG, NOW)
    status, reason, message = stalled(d)
    assert status == "True" and reason == "StageFailed"
    assert f"belongs to pipeline {ns}/{name} (uid {old.uid})" in message and "(exit 9)" in message
    assert f'set "uid" to {new.uid}' in message, f"the way to adopt the folder is cut off: {message}"


def test_a_job_name_held_by_an_unlabelled_object_is_a_refusal_naming_it_not_a_create_on_every_pass():
    """A Job of the pipeline's name but without its labels: no LIST by label shows it, so the create meets it.
    Its controller is looked up by name, and the pass ends in CreateRefused (409) naming the holder."""
    from trainpipe_operator.act import CreateRefused
    from trainpipe_operator.refusals import describe, refusal_of

    theirs = _job(RANK, "uid-old")
    theirs["metadata"]["labels"] = {}
    kube = FakeKube(theirs)
    d = decide(_view(), Observed(spec_map_exists=True), CONFIG, NOW)
    assert RANK in [m["metadata"]["name"] for m in d.create]
    with pytest.raises(CreateRefused) as refused:
        act(kube, {"metadata": {"name": PIPELINE, "namespace": NAMESPACE}, "status": {}}, _view(), d, Metrics(), ChildCache(),  # type: ignore[arg-type]
            post=lambda *_: None)
    err = refused.value.error
    assert err.status == 409 and "uid-old" in err.message
    text = describe(refusal_of(refused.value.manifest, err.status, err.reason, err.message, err.fields, generation=1, dry_run=False,
                               at=NOW, before=None))
    assert f"a Job named {RANK} exists and is not this pipeline's" in text and "delete or rename that object" in text
    # The pipeline's own Job found that way is simply there: nothing is refused.
    mine = FakeKube(_job(RANK, UID))
    act(mine, {"metadata": {"name": PIPELINE, "namespace": NAMESPACE}, "status": {}}, _view(), d, Metrics(), ChildCache(),  # type: ignore[arg-type]
        post=lambda *_: None)
