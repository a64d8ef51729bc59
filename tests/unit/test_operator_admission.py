"""A stage's Jobs are dry-run once per shape: a second pipeline with the same spec creates at once."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from test_operator_refusals import RefusingKube, training_decision
from trainpipe.contract.names import ANNOTATION_PLAN_DIGEST, LABEL_PIPELINE, LABEL_RUN
from trainpipe_operator.act import CreateRefused, act
from trainpipe_operator.admission import ADMITTED_SECONDS, job_shape
from trainpipe_operator.cache import ChildCache
from trainpipe_operator.metrics import Metrics


def job(pipeline: str = "p001", run: str = "r1234567890", uid: str = "uid-1", namespace: str = "team", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{pipeline}-{run}-cpu-lightgbm-0", "namespace": namespace,
                         "labels": {LABEL_PIPELINE: pipeline, LABEL_RUN: run}, "annotations": {ANNOTATION_PLAN_DIGEST: "a" * 64},
                         "ownerReferences": [{"kind": "TrainingPipeline", "name": pipeline, "uid": uid, "controller": True}]},
            "spec": {"completions": 5, "template": {"spec": {"containers": [{"args": ["--output-dir", f"/artifacts/{namespace}/{pipeline}/{run}"],
                                                                             "resources": {"requests": {"cpu": "1"}}}]}}, **spec}}


@pytest.mark.parametrize(("other", "same"), [
    (job(pipeline="p002", run="r0987654321", uid="uid-2"), True),  # another pipeline, same spec: names of equal length
    (job(namespace="tean"), True),  # the namespace is a name too
    (job(pipeline="p0002"), False),  # a longer name can break a length limit: its own dry run
    (job(completions=6), False),
    (job(backoffLimitPerIndex=2), False),
])
def test_a_shape_is_the_manifest_without_the_runs_names_but_with_their_lengths(other: dict[str, Any], same: bool) -> None:
    assert (job_shape(other) == job_shape(job())) is same


def test_a_name_inside_another_does_not_split_it() -> None:
    """Pipeline "r1" in run "r1abc": the run is replaced whole, so it is still a name of 5 characters."""
    a, b = job(pipeline="r1", run="r1abc"), job(pipeline="x9", run="r1abc")
    assert job_shape(a) == job_shape(b)


def test_resources_of_one_family_change_its_shape() -> None:
    bigger = job()
    bigger["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "64"
    assert job_shape(bigger) != job_shape(job())


def test_a_second_run_with_the_same_shapes_is_not_dry_run_and_a_refusal_forgets_them() -> None:
    view, d = training_decision()
    names = [m["metadata"]["name"] for m in d.create if m["kind"] == "Job"]
    clock = [0.0]
    cache = ChildCache(clock=lambda: clock[0])
    first = RefusingKube(refuse="nothing")
    act(first, {"status": {}}, view, d, Metrics(), cache)  # type: ignore[arg-type]
    assert [c for c in first.calls if c[1] in names] == [("dry-run", names[0]), ("dry-run", names[1]), ("create", names[0]), ("create", names[1])]

    again = RefusingKube(refuse="nothing")
    act(again, {"status": {}}, view, copy.deepcopy(d), Metrics(), cache)  # type: ignore[arg-type]
    assert [c for c in again.calls if c[1] in names] == [("create", names[0]), ("create", names[1])], "the shapes passed a dry run lately"

    clock[0] = ADMITTED_SECONDS + 1
    late = RefusingKube(refuse="nothing")
    act(late, {"status": {}}, view, d, Metrics(), cache)  # type: ignore[arg-type]
    assert ("dry-run", names[0]) in late.calls, "a dry run stands only so long: the namespace's quotas and policies may change"

    refusing = RefusingKube(refuse=names[1], on_dry_run=False)
    with pytest.raises(CreateRefused):
        act(refusing, {"status": {}}, view, d, Metrics(), cache)  # type: ignore[arg-type]
    after = RefusingKube(refuse="nothing")
    act(after, {"status": {}}, view, d, Metrics(), cache)  # type: ignore[arg-type]
    assert [c for c in after.calls if c[0] == "dry-run"] == [("dry-run", names[0]), ("dry-run", names[1])], "a refusal forgets what passed"
