"""Object storage in the spec and the Jobs (pure): which URIs count, no claims for them, credentials only by Secret reference."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from trainpipe.cli.options import output_location, overlay
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.storage import is_object_uri
from trainpipe_operator import manifests
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.manifests import JobIntent, Owner

CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
OWNER = Owner("ns", "demo", "uid-1")
ON_STORE = {"data": {"uri": "s3://bars/daily"}, "artifacts": {"uri": "s3://models/trainpipe/"},
            "storage": {"credentialsSecret": "s3-keys", "endpoint": "http://10.213.1.1:8333", "region": "eu-west-1"}}
ON_CLAIMS = {"data": {"dir": "example", "volume": {"claimName": "bars"}}}


@pytest.mark.parametrize(("text", "expected"), [
    ("s3://bucket/prefix", True),
    ("gs://bucket", True),
    ("abfs://container/path", True),
    ("data/example", False),
    ("/data/example", False),
    ("s3:/bucket", False),  # what a Path makes of s3://: refused, never read as a local folder by accident
    ("", False),
])
def test_which_text_is_an_object_store_uri(text, expected):
    assert is_object_uri(text) is expected


@pytest.mark.parametrize("uri", ["s3://", "http://bucket/x", "s3:///x", "file:///tmp/x"])
def test_spec_refuses_a_uri_without_a_bucket_or_of_another_scheme(uri):
    with pytest.raises(ValidationError):
        PipelineSpec.model_validate({"data": {"uri": uri}})


def test_output_dir_keeps_a_uri_as_text_and_data_dir_uri_goes_to_data_uri():
    assert output_location("s3://b/runs") == "s3://b/runs"
    assert str(output_location("out/x")) == "out/x"
    import argparse

    spec = overlay({}, argparse.Namespace(data_dir="s3://b/bars"))
    assert spec["data"] == {"uri": "s3://b/bars"}
    assert overlay({}, argparse.Namespace(data_dir="data/example"))["data"] == {"dir": "data/example"}


def job(spec: dict[str, Any], stage: str = "rank") -> dict[str, Any]:
    intents = {"rank": JobIntent(Stage.RANK, None, 0, 1), "report": JobIntent(Stage.REPORT, None, 0, 1),
               "cpu": JobIntent(Stage.CPU, "lightgbm", 0, 4, "d" * 64)}
    return manifests.job(PipelineSpec.model_validate(spec), OWNER, "r1", intents[stage], CONFIG, suspend=False)


@pytest.mark.parametrize("stage", ["rank", "cpu", "report"])
def test_object_store_jobs_mount_no_claim_and_get_keys_by_secret_reference(stage):
    pod = job(ON_STORE, stage)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert {m["name"] for m in container["volumeMounts"]} <= {"scratch", "spec"}
    env = {e["name"]: e for e in container["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"] == {"secretKeyRef": {"name": "s3-keys", "key": key}}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://10.213.1.1:8333" and env["AWS_REGION"]["value"] == "eu-west-1"
    args = container["args"]
    assert args[args.index("--output-dir") + 1] == "s3://models/trainpipe/ns/demo/r1"
    assert "--reuse-dir" not in args and "--owner" not in args and "--keep-runs" not in args
    if stage != "report":
        assert args[args.index("--data-dir") + 1] == "s3://bars/daily"


def test_claim_jobs_are_unchanged_and_carry_no_storage_env():
    pod = job(ON_CLAIMS)["spec"]["template"]["spec"]
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v} == {"bars", "demo-artifacts"}
    assert not [e for e in pod["containers"][0]["env"] if e["name"].startswith("AWS_")]


def test_the_spec_the_jobs_get_names_the_uri_and_never_the_credentials():
    text = manifests.job_spec_json(PipelineSpec.model_validate(ON_STORE))
    assert json.loads(text)["data"]["uri"] == "s3://bars/daily"  # data.uri wins over the (default) dir in the jobs
    assert "s3-keys" not in text and "storage" not in json.loads(text)  # where to reach the store is scheduling, not identity


@pytest.mark.parametrize(("store_says", "expected"), [
    ("When getting information for bucket 'nope': AWS Error NO_SUCH_BUCKET during HeadBucket", "the bucket 'nope' does not exist"),
    ("AWS Error ACCESS_DENIED during ListObjectsV2 operation: Access Denied", "access denied by the object store"),
    ("AWS Error SIGNATURE_DOES_NOT_MATCH during HeadObject", "access denied by the object store"),
    ("When reading information for key 'x' in bucket 'nope': AWS Error UNKNOWN (HTTP status 403)", "access denied by the object store"),
    ("Path does not exist 'nope/bars/a.parquet'", "no such object; was it deleted"),
    ("curlCode: 7, Couldn't connect to server", "the object store failed (curlCode: 7"),
])
def test_store_failures_become_one_line_naming_the_uri_and_what_to_do(store_says, expected, monkeypatch):
    from trainpipe.io.objectstore import explain

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    message = explain("s3://nope/bars", OSError(store_says + " s3cr3t-value"))
    assert message.startswith("s3://nope/bars: ") and expected in message
    assert "s3cr3t-value" not in message
