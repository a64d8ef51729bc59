"""A pipeline with no claim at all: its bars and its outputs on the local cluster's S3 server (SeaweedFS, started by
localcluster/up.sh), its runs and models in a real `mlflow server` whose artefacts are on that S3 server too. The run
ends Ready, its outputs are complete objects under the run's prefix, the credentials never show, and the champion
registered in MLflow loads from the registry and reproduces the holdout metrics of its metrics.json."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pytest

from trainpipe_localcluster import CORE, Cluster, Kube, pipeline_manifest, pipelines_path, wait_condition
from trainpipe_localcluster.s3server import cluster_env

RUN_TIMEOUT = 480
BUCKET = "trainpipe"  # the bucket localcluster/up.sh creates
SECRET = "s3-keys"
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _store(env: dict[str, str]) -> pafs.S3FileSystem:
    scheme, host = env["AWS_ENDPOINT_URL"].split("://")
    return pafs.S3FileSystem(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"], endpoint_override=host,
                             scheme=scheme, region=env.get("AWS_REGION") or "us-east-1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(cluster: Cluster) -> dict[str, str]:
    return cluster_env(cluster.state)


@pytest.fixture
def mlflow_server(tmp_path: Path, s3: dict[str, str]) -> Iterator[str]:
    """`mlflow server` on loopback (the simulated nodes' pods are processes of this machine), SQLite backend, artefacts on the
    S3 server; clients upload through it, so only the server holds the store's keys."""
    port = _free_port()
    env = os.environ | QUIET | {k: v for k, v in s3.items() if k.startswith("AWS_")} | {"MLFLOW_S3_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"]}
    log = open(tmp_path / "mlflow.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                             "--artifacts-destination", f"s3://{BUCKET}/mlflow-artifacts", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert proc.poll() is None, f"mlflow server exited {proc.returncode}:\n{(tmp_path / 'mlflow.log').read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"mlflow server not healthy:\n{(tmp_path / 'mlflow.log').read_text()[-3000:]}"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_a_pipeline_on_object_storage_tracked_in_mlflow_needs_no_claim_and_its_champion_reproduces_its_metrics(
        cluster: Cluster, kube: Kube, namespace: str, operator: Any, example_data_cache: Path, s3: dict[str, str], mlflow_server: str) -> None:
    store = _store(s3)
    bars = f"{BUCKET}/{namespace}/bars"
    pafs.copy_files(str(example_data_cache), bars, destination_filesystem=store)
    kube.create(f"{CORE}/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "type": "Opaque",
        "stringData": {"AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"]}})
    manifest = pipeline_manifest(
        "s3", data={"volume": None, "dir": None, "uri": f"s3://{bars}"}, artifacts={"uri": f"s3://{BUCKET}/{namespace}/runs"},
        storage={"credentialsSecret": SECRET, "endpoint": s3["AWS_ENDPOINT_URL"], "region": s3.get("AWS_REGION") or "us-east-1"},
        tracking={"mlflowUri": mlflow_server, "experiment": namespace, "modelPrefix": "s3"},
    )
    kube.create(pipelines_path(namespace), manifest)
    wait_condition(kube, namespace, "s3", "Ready", timeout=RUN_TIMEOUT)
    obj = kube.get(pipelines_path(namespace, "s3"))
    status = obj["status"]
    assert status["stage"] == "Done" and status["lastSucceededRun"]["runId"] == status["runId"]

    # No claim was made or mounted: everything went through the store.
    claims = kube.get(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims")["items"]
    assert not claims, [c["metadata"]["name"] for c in claims]
    pods = kube.get(f"{CORE}/namespaces/{namespace}/pods", labelSelector="trainpipe.io/pipeline=s3")["items"]
    assert pods and all(not any("persistentVolumeClaim" in v for v in p["spec"].get("volumes") or []) for p in pods)
    # The keys reach the pods by reference only, and appear in no status, Event or log the operator wrote.
    secret_value = s3["AWS_SECRET_ACCESS_KEY"]
    events = kube.get(f"{CORE}/namespaces/{namespace}/events")["items"]
    assert secret_value not in json.dumps(obj) and secret_value not in json.dumps(events)
    assert secret_value not in cluster.operator_log(namespace).read_text()

    # The run's outputs are complete objects under its prefix, each stage's completion record written last.
    run_prefix = f"{BUCKET}/{namespace}/runs/{namespace}/s3/{status['runId']}"
    names = {info.path[len(run_prefix) + 1:] for info in store.get_file_info(pafs.FileSelector(run_prefix, recursive=True))
             if info.type == pafs.FileType.File}
    assert {"report.html", "globals/training_plan/master_training_plan.json", "ranking/target_rankings.json"} <= names, sorted(names)
    assert any(n.startswith("_complete/") for n in names), sorted(names)
    metrics_files = sorted(n for n in names if n.startswith("models/") and n.endswith("/metrics.json"))
    assert metrics_files

    # MLflow: the status says the run was tracked; the champion loads from the registry and reproduces its metrics.json.
    assert status["report"]["tracking"]["state"] == "tracked", status["report"]
    import mlflow
    from mlflow import MlflowClient

    os.environ.update(QUIET)
    client = MlflowClient(mlflow_server, mlflow_server)
    [registered] = status["report"]["tracking"]["registered"]
    name, version = registered.rsplit(":", 1)
    assert client.get_model_version_by_alias(name, "champion").version == version
    tags = client.get_model_version(name, version).tags
    job_id, family = tags["trainpipe.job_id"], tags["trainpipe.family"]
    metrics = json.loads(store.open_input_file(f"{run_prefix}/models/{job_id}/{family}/metrics.json").readall())
    plan = json.loads(store.open_input_file(f"{run_prefix}/globals/training_plan/master_training_plan.json").readall())

    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    test_rows, y = _holdout_rows(example_data_cache, plan, job_id, metrics)
    from trainpipe.data.frames import frame_symbols, frame_ts
    from trainpipe.training.metrics import evaluate

    pred = np.asarray(model.predict(test_rows), dtype=np.float64)
    job = next(j for j in plan["jobs"] if j["job_id"] == job_id)
    again = evaluate(y, pred, frame_ts(test_rows), frame_symbols(test_rows), job["task"], horizon_bars=metrics["holdout"]["horizon_bars"])
    for key in ("ic", "rank_ic", "hit_rate"):
        if metrics["metrics"].get(key) is not None:
            assert again[key] == pytest.approx(metrics["metrics"][key], abs=1e-6), key


def _holdout_rows(data: Path, plan: dict[str, Any], job_id: str, metrics: dict[str, Any]):
    """The job's holdout rows with a known label, as training cut them (the plan's calendar cut, purged by horizon + embargo)."""
    from trainpipe.contract.cut import HoldoutCut
    from trainpipe.cv import pinned_mask
    from trainpipe.data.frames import frame_symbols, frame_ts
    from trainpipe.data.loading import load_panel
    from trainpipe.training.worker import job_rows, split_rows

    cut = HoldoutCut.model_validate(plan["metadata"]["holdout_cut"])
    job = next(j for j in plan["jobs"] if j["job_id"] == job_id)
    full = load_panel(data, sorted(cut.symbols), min_rows_per_symbol=1).frame.reset_index(drop=True)
    full = full.loc[pinned_mask(frame_ts(full), frame_symbols(full), cut)].reset_index(drop=True)
    _, rows = split_rows(job_rows(full, job["symbol"]), job["target"], cut, metrics["holdout"]["embargo_bars"])
    assert len(rows) == metrics["n_test"]
    return rows, rows[job["target"]].to_numpy(dtype=np.float64)
