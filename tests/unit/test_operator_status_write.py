"""The operator's status write (`act.write_status`) against a fake API server that answers 409 on a stale resourceVersion.

Each row edits the pipeline between the operator's read and its write, the way a client racing the
operator does, and says what must happen: the status lands on the fresh object with the user's edit
kept, or the pass starts over because someone else wrote the status.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from trainpipe.kube.client import ApiError
from trainpipe_operator.act import STATUS_WRITE_ATTEMPTS, StatusConflict, write_status

PATH = "/apis/trainpipe.io/v1alpha1/namespaces/ns/trainingpipelines/p"
READ = {"metadata": {"name": "p", "resourceVersion": "1", "generation": 1, "labels": {}}, "spec": {"keepRuns": 3},
        "status": {"observedGeneration": 0}}
NEW_STATUS = {"observedGeneration": 1, "stage": "rank"}


class FakeServer:
    """One TrainingPipeline with the API server's rules for PUT /status: resourceVersion must match,
    and only status is taken from the body. `edit` runs before each of the first `edits` PUTs."""

    def __init__(self, edit: Callable[[dict[str, Any]], None], edits: int = 1) -> None:
        self.obj = copy.deepcopy(READ)
        self.edit, self.edits, self.puts = edit, edits, 0

    def _bump(self) -> None:
        self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)

    def replace(self, resource_path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert resource_path == PATH + "/status"
        self.puts += 1
        if self.puts <= self.edits:
            self.edit(self.obj)
            self._bump()
        if body["metadata"]["resourceVersion"] != self.obj["metadata"]["resourceVersion"]:
            raise ApiError("PUT", resource_path, 409, {"reason": "Conflict", "message": "the object has been modified"})
        self.obj["status"] = copy.deepcopy(body["status"])
        self._bump()
        return self.obj

    def get_or_none(self, resource_path: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.obj) if self.obj else None


def label(obj: dict[str, Any]) -> None:
    obj["metadata"]["labels"]["edited"] = "yes"


def spec(obj: dict[str, Any]) -> None:
    obj["spec"]["keepRuns"] = 9
    obj["metadata"]["generation"] += 1


def other_writer(obj: dict[str, Any]) -> None:
    obj["status"] = {"observedGeneration": 1, "stage": "select"}


def deleted(obj: dict[str, Any]) -> None:
    obj.clear()
    obj["metadata"] = {"resourceVersion": "0"}


@pytest.mark.parametrize(("edit", "edits", "outcome"), [
    (lambda obj: None, 0, "written"),  # nobody raced: one PUT
    (label, 1, "written"),  # a label edit between read and write: the status goes on the fresh object
    (spec, 1, "written"),  # a spec edit too; observedGeneration still names the spec it was computed for
    (spec, STATUS_WRITE_ATTEMPTS - 1, "written"),  # a burst of edits
    (spec, STATUS_WRITE_ATTEMPTS, "conflict"),  # edits that never stop: the pass gives up and starts over
    (other_writer, 1, "conflict"),  # another writer's status is never overwritten
])
def test_a_status_write_survives_user_edits_but_never_overwrites_another_status(edit: Callable[[dict[str, Any]], None],
                                                                                 edits: int, outcome: str) -> None:
    server = FakeServer(edit, edits)
    expected_after = copy.deepcopy(READ)
    for _ in range(min(edits, STATUS_WRITE_ATTEMPTS)):
        edit(expected_after)
    if outcome == "conflict":
        with pytest.raises(StatusConflict):
            write_status(server, copy.deepcopy(READ), PATH, NEW_STATUS)  # type: ignore[arg-type]
        assert server.obj["status"] != NEW_STATUS
    else:
        write_status(server, copy.deepcopy(READ), PATH, NEW_STATUS)  # type: ignore[arg-type]
        assert server.obj["status"] == NEW_STATUS
    # Whatever happened, the user's edits are all there: the operator never writes spec or metadata.
    assert server.obj["spec"] == expected_after["spec"] and server.obj["metadata"]["labels"] == expected_after["metadata"]["labels"]


def test_a_pipeline_deleted_before_its_status_write_is_left_alone() -> None:
    server = FakeServer(deleted)
    server.get_or_none = lambda resource_path: None  # type: ignore[method-assign]
    write_status(server, copy.deepcopy(READ), PATH, NEW_STATUS)  # type: ignore[arg-type]
    assert server.puts == 1
