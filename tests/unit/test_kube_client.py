"""The one Kubernetes client (trainpipe.kube.client) over a stand-in for the official ApiClient's transport,
and what `trainpipe status`/`logs` make of its answers and errors (trainpipe.cli.cluster)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from trainpipe.cli.cluster import Cluster, ClusterError, get_pipeline
from trainpipe.kube.client import ApiError, Kube


class Transport:
    """The two methods of kubernetes.client.ApiClient that Kube calls, answering from a table by path."""

    def __init__(self, answers: dict[str, tuple[int, Any]]) -> None:
        self.answers = answers
        self.configuration = SimpleNamespace(host="https://api.test:6443")
        self.asked: list[tuple[str, str, list[tuple[str, Any]] | None, dict[str, str]]] = []

    def param_serialize(self, method: str, path: str, *, query_params: Any, header_params: dict[str, str], body: Any, auth_settings: Any) -> tuple[Any, ...]:
        self.asked.append((method, path, query_params, header_params))
        return (method, path, header_params, body, None)

    def call_api(self, method: str, path: str, header_params: Any = None, body: Any = None, post_params: Any = None, _request_timeout: Any = None) -> Any:
        if path not in self.answers:
            raise ConnectionRefusedError("connection refused")
        status, body = self.answers[path]
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return SimpleNamespace(status=status, read=lambda: raw)


NOT_FOUND = (404, {"kind": "Status", "reason": "NotFound", "message": 'trainingpipelines.trainpipe.io "nope" not found'})


def test_answers_are_plain_dicts_and_errors_carry_the_status_reason_and_message() -> None:
    kube = Kube(Transport({"/a": (200, {"items": []}), "/b": NOT_FOUND, "/c": (409, {"reason": "AlreadyExists", "message": "exists"})}))  # type: ignore[arg-type]
    assert kube.get("/a") == {"items": []}
    assert kube.get_or_none("/b") is None
    assert kube.create("/c", {"kind": "Job"}) is None, "an object that already exists was created by an earlier pass"
    with pytest.raises(ApiError) as err:
        kube.get("/b")
    assert (err.value.status, err.value.reason, err.value.message) == (404, "NotFound", 'trainingpipelines.trainpipe.io "nope" not found')


def test_a_log_is_text_even_when_a_line_of_it_is_json() -> None:
    api = Transport({"/log": (200, b'{"stage":"rank","status":"ran"}\n')})
    assert Kube(api).text("/log", tailLines=5) == '{"stage":"rank","status":"ran"}\n'  # type: ignore[arg-type]
    assert api.asked[0][2] == [("tailLines", 5)] and api.asked[0][3]["Accept"] == "*/*"


def test_the_cli_says_which_pipeline_is_missing_where_and_which_server_it_cannot_reach() -> None:
    path = "/apis/trainpipe.io/v1alpha1/namespaces/ml/trainingpipelines/nope"
    cluster = Cluster(kube=Kube(Transport({path: NOT_FOUND})), namespace="ml")  # type: ignore[arg-type]
    with pytest.raises(ClusterError, match="TrainingPipeline nope not found in namespace ml"):
        get_pipeline(cluster, "nope")
    with pytest.raises(ClusterError, match="cannot reach the API server https://api.test:6443"):
        cluster.run_pods({"metadata": {"name": "demo"}, "status": {"runId": "r1"}})


def test_the_cli_reads_the_current_runs_pods_oldest_first_as_parsed_views() -> None:
    items = [{"metadata": {"name": n, "creationTimestamp": t, "labels": {"job-name": "j"}}, "status": {"phase": "Succeeded"}}
             for n, t in (("b", "2026-12-01T12:00:02Z"), ("a", "2026-12-01T12:00:01Z"), ("c", "2026-12-01T12:00:01Z"))]
    api = Transport({"/api/v1/namespaces/ml/pods": (200, {"items": items})})
    pods = Cluster(kube=Kube(api), namespace="ml").run_pods({"metadata": {"name": "demo"}, "status": {"runId": "r1"}}, **{"trainpipe.io/stage": "cpu"})  # type: ignore[arg-type]
    assert [p.name for p in pods] == ["a", "c", "b"] and {p.job for p in pods} == {"j"}
    assert api.asked[0][2] == [("labelSelector", "trainpipe.io/pipeline=demo,trainpipe.io/run=r1,trainpipe.io/stage=cpu")]


def test_a_body_reaches_the_official_clients_transport_as_the_plain_dict_with_its_auth_headers() -> None:
    """Through the real ApiClient: the body skips its per-value sanitising walk, and the REST layer sends it as JSON."""
    from kubernetes.client import ApiClient, Configuration

    config = Configuration(host="https://api.test:6443", api_key={"BearerToken": "t0ken"}, api_key_prefix={"BearerToken": "Bearer"})
    api = ApiClient(config)
    sent: list[tuple[str, str, dict[str, str], Any]] = []

    def request(method: str, url: str, headers: dict[str, str], body: Any = None, post_params: Any = None, _request_timeout: Any = None) -> Any:
        sent.append((method, url, headers, body))
        return SimpleNamespace(status=201, read=lambda: json.dumps(body).encode())

    api.rest_client.request = request  # type: ignore[method-assign]
    job = {"kind": "Job", "metadata": {"name": "p-rank", "labels": {"a": "b"}}, "spec": {"completions": 3, "template": {"spec": {"containers": [{"args": ["x"]}]}}}}
    assert Kube(api).create("/apis/batch/v1/namespaces/ml/jobs", job, dry_run=True) == job
    method, url, headers, body = sent[0]
    assert (method, url) == ("POST", "https://api.test:6443/apis/batch/v1/namespaces/ml/jobs?dryRun=All")
    assert headers["authorization"] == "Bearer t0ken" and headers["Content-Type"] == "application/json"
    assert body is job, "the dict goes to the REST layer as given (it json.dumps it), not a sanitised copy"
