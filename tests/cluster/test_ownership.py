"""Ownership on a real control plane: one artifacts volume serving two namespaces, and a name the pipeline needs
held by an object it does not control.

- Two pipelines named `same`, one per namespace, both writing to one volume (two PersistentVolumes over one
  host folder, as one NFS export serves several teams): each run ends Ready in its own `<ns>/same` folder
  with its own owner record, the old `<mount>/same` folder is moved into exactly one of them and its runs
  are never pruned, and the pruning of one (keepRuns 1) never touches the other's runs.
- A `<name>-plan` ConfigMap made before the pipeline, by someone else: the pipeline stalls (NameTaken) naming
  it, the ConfigMap is left byte for byte, and once it is deleted the run goes on by itself.

Every stage but report is skipped (completed by the executor without running); report is the stage
that claims the pipeline folder and prunes, so it runs for real.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trainpipe_localcluster import CORE, Cluster, Kube, OperatorProcess, condition, pipeline_manifest, pipelines_path, wait_condition, wait_for
from trainpipe_localcluster.executor import SKIP_LABEL as SKIP
from trainpipe_localcluster.executor import SKIP_MESSAGE_ANNOTATION as SKIP_MESSAGE

WAIT = 120  # skipped stages take about a second each; a machine shared with other test runs is slower
PLAN = {"planDigest": "1" * 64, "path": "globals/training_plan/master_training_plan.json", "units": {"lightgbm": 1}}
CLAIM = "shared"


def skipped_but_report() -> dict[str, Any]:
    skip = {"labels": {SKIP: "true"}}
    stages: dict[str, Any] = {stage: {"podMetadata": skip} for stage in ("select", "cpu", "gpu")}
    stages["rank"] = {"podMetadata": {**skip, "annotations": {SKIP_MESSAGE: json.dumps({"selected": 1})}}}
    stages["plan"] = {"podMetadata": {**skip, "annotations": {SKIP_MESSAGE: json.dumps(PLAN)}}}
    return stages


def manifest(name: str, keep_runs: int) -> dict[str, Any]:
    # No data claim: no stage that reads data runs.
    return pipeline_manifest(name, data={"volume": None, "dir": "/data/none"}, artifacts={"claimName": CLAIM}, keepRuns=keep_runs,
                             stages=skipped_but_report())


def _run_folder(root: Path, name: str, at: float) -> None:
    """A finished run of the layout the report understands: its stage records and success record."""
    (root / name / ".trainpipe").mkdir(parents=True)
    for record in ("rank.json", "succeeded.json"):
        (root / name / ".trainpipe" / record).write_text("{}")
        os.utime(root / name / ".trainpipe" / record, (at, at))


@pytest.fixture
def second_namespace(cluster: Cluster, namespace: str) -> Iterator[str]:
    name = f"{namespace[:50]}-b"
    cluster.kube.create(f"{CORE}/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"trainpipe.io/test": "cluster"}}})
    wait_for(f"ServiceAccount default in {name}", lambda: cluster.kube.exists(f"{CORE}/namespaces/{name}/serviceaccounts/default"), timeout=30)
    yield name
    cluster.kube.delete(f"{CORE}/namespaces/{name}")


@pytest.fixture
def one_volume(cluster: Cluster, namespace: str, second_namespace: str) -> Iterator[Path]:
    """Claim `shared` in both namespaces, bound to two PersistentVolumes over one host folder."""
    folder = cluster.state / "shared-volumes" / secrets.token_hex(4)
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    volumes = []
    for ns in (namespace, second_namespace):
        pv = f"{CLAIM}-{ns}"[:63]
        cluster.kube.create(f"{CORE}/persistentvolumes", {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
            "hostPath": {"path": str(folder)}, "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": CLAIM}}})
        volumes.append(pv)
        cluster.kube.create(f"{CORE}/namespaces/{ns}/persistentvolumeclaims", {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": CLAIM}, "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv,
                                                                  "resources": {"requests": {"storage": "1Gi"}}}})
    for ns in (namespace, second_namespace):
        wait_for(f"claim {ns}/{CLAIM} Bound", lambda ns=ns: cluster.kube.get(f"{CORE}/namespaces/{ns}/persistentvolumeclaims/{CLAIM}")
                 .get("status", {}).get("phase") == "Bound", timeout=30)
    yield folder
    for pv in volumes:
        cluster.kube.delete(f"{CORE}/persistentvolumes/{pv}")
    shutil.rmtree(folder, ignore_errors=True)


def _operator(cluster: Cluster, operator_kubeconfig: Path, *namespaces: str) -> OperatorProcess:
    proc = OperatorProcess(operator_kubeconfig, cluster.operator_log(namespaces[0]), namespaces=list(namespaces))
    proc.start()
    return proc


def test_two_namespaces_one_volume_same_pipeline_name(cluster: Cluster, kube: Kube, namespace: str, second_namespace: str, one_volume: Path,
                                                       operator_kubeconfig: Path) -> None:
    a, b = namespace, second_namespace
    _run_folder(one_volume / "same", "r-legacy", 100)  # the layout without namespaces, from before the upgrade
    _run_folder(one_volume / b / "same", "r-b-old1", 200)  # b's earlier runs, in the new layout already
    _run_folder(one_volume / b / "same", "r-b-old2", 300)
    proc = _operator(cluster, operator_kubeconfig, a, b)
    try:
        # a prunes hard (keepRuns 1); in the layout without namespaces that would have removed b's runs.
        kube.create(pipelines_path(a), manifest("same", keep_runs=1))
        kube.create(pipelines_path(b), manifest("same", keep_runs=10))
        for ns in (a, b):
            wait_condition(kube, ns, "same", "Ready", timeout=WAIT)
    finally:
        proc.stop()

    layout = sorted(str(p.relative_to(one_volume)) for p in one_volume.rglob("*") if ".trainpipe/" not in str(p.relative_to(one_volume)))
    runs: dict[str, str] = {}
    for ns in (a, b):
        obj = kube.get(pipelines_path(ns, "same"))
        runs[ns] = obj["status"]["runId"]
        assert obj["status"]["outputPath"] == f"/artifacts/{ns}/same/{runs[ns]}"
        assert obj["status"]["lastSucceededRun"]["modelsPath"] == f"/artifacts/{ns}/same/{runs[ns]}/models"
        record = json.loads((one_volume / ns / "same" / ".trainpipe" / "owner.json").read_text())
        assert record == {"namespace": ns, "name": "same", "uid": obj["metadata"]["uid"]}, layout
    # The old folder went, whole, to the pipeline whose new folder did not exist yet (a), and stays unpruned there.
    assert not (one_volume / "same").exists(), layout
    assert folders(one_volume / a / "same") == sorted([runs[a], "r-legacy"]), layout
    assert json.loads((one_volume / a / "same" / ".trainpipe" / "legacy-runs.json").read_text())["runs"] == ["r-legacy"]
    # b's runs are all there: a's pruning never reached them.
    assert folders(one_volume / b / "same") == sorted([runs[b], "r-b-old1", "r-b-old2"]), layout


def folders(pipeline: Path) -> list[str]:
    return sorted(p.name for p in pipeline.iterdir() if not p.name.startswith("."))


def test_an_unowned_plan_configmap_stalls_the_pipeline_and_is_left_byte_for_byte(cluster: Cluster, kube: Kube, namespace: str,
                                                                                  operator: OperatorProcess) -> None:
    path = f"{CORE}/namespaces/{namespace}/configmaps/mine-plan"
    kube.create(f"{CORE}/namespaces/{namespace}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine-plan"},
                                                             "data": {"owner": "someone else", "run": "r1"}})
    before = kube.get(path)
    kube.create(pipelines_path(namespace), pipeline_manifest("mine", data={"volume": None, "dir": "/data/none"}, stages=skipped_but_report()))

    stall = wait_condition(kube, namespace, "mine", "Stalled", timeout=WAIT)
    assert stall["reason"] == "NameTaken" and f"ConfigMap {namespace}/mine-plan" in stall["message"] and "no controller" in stall["message"]
    time.sleep(2)  # passes after the stall (a status write, a resync) still leave it alone
    assert kube.get(path) == before, "the ConfigMap the pipeline does not own is never written"
    obj = kube.get(pipelines_path(namespace, "mine"))
    assert condition(obj, "Ready")["status"] == "False"
    assert not kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"], "a stalled pipeline creates no Job"

    kube.delete(path)
    wait_for("the run going on once the name is free", lambda: kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"], timeout=60)
    assert condition(kube.get(pipelines_path(namespace, "mine")), "Stalled")["status"] == "False"
