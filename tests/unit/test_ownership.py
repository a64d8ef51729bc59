"""Pipeline folders and their owner record: the first stage records the pipeline, a stage of another pipeline
(another namespace, or one deleted and created again) neither writes nor prunes there, and the folder of the
layout without namespaces moves to `<mount>/<namespace>/<pipeline>` once, without a run folder lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainpipe.contract.exitcodes import ExitCode
from trainpipe.contract.owners import FolderOwner
from trainpipe.io.atomic import create_json
from trainpipe.runner.ownership import FolderOwnedError, claim_folder, legacy_runs, owner_record, read_owner
from trainpipe.runner.retention import mark_succeeded

ML = FolderOwner(namespace="ml", name="demo", uid="uid-ml")
RECREATED = FolderOwner(namespace="ml", name="demo", uid="uid-ml-2")  # deleted and created again: same name, new UID
RESEARCH = FolderOwner(namespace="research", name="demo", uid="uid-research")


def _run(pipeline: Path, name: str, at: float, succeeded: bool = True) -> Path:
    folder = pipeline / name
    (folder / ".trainpipe").mkdir(parents=True)
    record = folder / ".trainpipe" / "rank.json"
    record.write_text("{}")
    os.utime(record, (at, at))
    if succeeded:
        mark_succeeded(folder)
    return folder


def _report(run: Path, *extra: str) -> subprocess.CompletedProcess:
    """`trainpipe report` as the operator's last step runs it (keepRuns 1)."""
    return subprocess.run([sys.executable, "-m", "trainpipe.cli.main", "report", "--output-dir", str(run), "--reuse-dir", str(run.parent),
                           "--keep-runs", "1", *extra], capture_output=True, text=True, timeout=120)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_owner_argument_round_trips_and_a_malformed_one_names_the_shape():
    assert FolderOwner.from_arg(ML.to_arg()) == ML
    for bad in ("ml/demo", "ml//uid", "a/b/c/d"):
        with pytest.raises(ValueError, match="<namespace>/<pipeline>/<uid>"):
            FolderOwner.from_arg(bad)


def test_the_first_writer_records_the_owner_and_the_same_pipeline_goes_on(tmp_path: Path):
    folder = tmp_path / "ml" / "demo"
    claim_folder(folder, ML)
    assert read_owner(folder) == ML
    assert json.loads(owner_record(folder).read_text()) == {"namespace": "ml", "name": "demo", "uid": "uid-ml"}
    claim_folder(folder, ML)  # every later stage of the pipeline: no error, record unchanged
    assert read_owner(folder) == ML


def test_a_record_is_created_once_even_by_two_writers_at_once(tmp_path: Path):
    path = tmp_path / "owner.json"
    assert create_json(path, {"uid": "a"}) is True
    assert create_json(path, {"uid": "b"}) is False, "the second claimant reads the first's record instead of replacing it"
    assert json.loads(path.read_text()) == {"uid": "a"} and [p.name for p in tmp_path.iterdir()] == ["owner.json"]


@pytest.mark.parametrize(("intruder", "why"), [(RECREATED, "deleted and created again"), (RESEARCH, "two pipelines were given one folder")])
def test_a_stage_of_another_pipeline_refuses_the_folder_naming_it_the_owner_and_how_to_adopt(tmp_path: Path, intruder: FolderOwner, why: str):
    folder = tmp_path / "ml" / "demo"
    claim_folder(folder, ML)
    with pytest.raises(FolderOwnedError) as raised:
        claim_folder(folder, intruder)
    message = str(raised.value)
    assert str(folder) in message and "pipeline ml/demo (uid uid-ml)" in message and why in message
    assert f'set "uid" to {intruder.uid} in {owner_record(folder)}' in message and "trainpipe.io/retry" in message
    assert raised.value.exit_code is ExitCode.FOLDER_OWNED and read_owner(folder) == ML


def test_an_unreadable_owner_record_is_refused_never_overwritten(tmp_path: Path):
    folder = tmp_path / "ml" / "demo"
    owner_record(folder).parent.mkdir(parents=True)
    owner_record(folder).write_text("{half a rec")
    with pytest.raises(FolderOwnedError, match="cannot be read"):
        claim_folder(folder, ML)
    assert owner_record(folder).read_text() == "{half a rec"


def test_report_of_another_pipeline_exits_9_and_neither_writes_nor_prunes(tmp_path: Path):
    pipeline = tmp_path / "ml" / "demo"
    old, new = _run(pipeline, "r1", 100), _run(pipeline, "r2", 200, succeeded=False)
    claim_folder(pipeline, ML)
    log = tmp_path / "termination-log"
    refused = _report(new, "--owner", RECREATED.to_arg(), "--termination-log", str(log))
    assert refused.returncode == ExitCode.FOLDER_OWNED == 9, refused.stderr
    said = log.read_text()  # the pod's termination message: what the operator puts in the pipeline's status
    assert said.startswith("report: FOLDER_OWNED: ") and "belongs to pipeline ml/demo (uid uid-ml)" in said, said
    assert old.exists() and not (new / "report.html").exists() and not (new / ".trainpipe" / "succeeded.json").exists()

    done = _report(new, "--owner", ML.to_arg())
    assert done.returncode == 0, done.stderr
    assert _names(pipeline) == [".trainpipe", "r2"], "its own pipeline prunes as keepRuns says"


def test_a_local_report_without_an_owner_leaves_no_record(tmp_path: Path):
    pipeline = tmp_path / "out"
    _run(pipeline, "r1", 100)
    new = _run(pipeline, "r2", 200, succeeded=False)
    done = _report(new)
    assert done.returncode == 0, done.stderr
    assert _names(pipeline) == ["r2"] and not owner_record(pipeline).exists()


# ---- from <mount>/<pipeline> to <mount>/<namespace>/<pipeline> -----------------------------------


def test_the_old_folder_moves_once_into_the_namespace_and_its_runs_are_never_pruned(tmp_path: Path):
    old = tmp_path / "demo"
    _run(old, "r-a", 100), _run(old, "r-b", 200)
    pipeline = tmp_path / "ml" / "demo"
    claim_folder(pipeline, ML)
    assert not old.exists() and read_owner(pipeline) == ML and legacy_runs(pipeline) == {"r-a", "r-b"}
    new = _run(pipeline, "r-c", 300, succeeded=False)
    done = _report(new, "--owner", ML.to_arg())
    assert done.returncode == 0, done.stderr
    assert _names(pipeline) == [".trainpipe", "r-a", "r-b", "r-c"], "runs from the old layout stay (keepRuns 1 counts only new ones)"


def test_the_same_name_in_a_second_namespace_starts_afresh_and_never_touches_the_first(tmp_path: Path):
    _run(tmp_path / "demo", "r-a", 100)
    claim_folder(tmp_path / "ml" / "demo", ML)
    claim_folder(tmp_path / "research" / "demo", RESEARCH)
    assert _names(tmp_path / "research" / "demo") == [".trainpipe"] and read_owner(tmp_path / "research" / "demo") == RESEARCH
    assert _names(tmp_path / "ml" / "demo") == [".trainpipe", "r-a"] and read_owner(tmp_path / "ml" / "demo") == ML


@pytest.mark.parametrize("case", ["new folder exists", "old folder owned", "old folder is a namespace", "old folder holds no runs"])
def test_the_old_folder_stays_where_it_is_unless_it_is_unambiguously_the_pipelines(tmp_path: Path, case: str):
    old, pipeline = tmp_path / "demo", tmp_path / "ml" / "demo"
    if case == "new folder exists":
        _run(old, "r-a", 100)
        _run(pipeline, "r-b", 200)
    elif case == "old folder owned":  # another pipeline's folder already (a namespace called demo's pipeline `demo`... or any record)
        _run(old, "r-a", 100)
        claim_folder(old, FolderOwner(namespace="x", name="demo", uid="uid-x"))
    elif case == "old folder is a namespace":  # <mount>/demo is namespace demo's folder in the new layout
        claim_folder(old / "train", FolderOwner(namespace="demo", name="train", uid="uid-t"))
        _run(old / "train", "r-t", 100)
    else:
        (old / "notes").mkdir(parents=True)
    before = sorted(str(p.relative_to(tmp_path)) for p in old.rglob("*"))
    claim_folder(pipeline, ML)
    assert sorted(str(p.relative_to(tmp_path)) for p in old.rglob("*")) == before, "the old folder is left exactly as it was"
    assert read_owner(pipeline) == ML and legacy_runs(pipeline) == set()


def test_the_report_jobs_of_one_pipeline_name_in_two_namespaces_on_one_volume(tmp_path: Path):
    """The report Jobs' own commands (as the operator builds them) on one volume: what tests/cluster/test_ownership.py
    checks on a cluster, here with this checkout's stage code."""
    from trainpipe.contract.pipeline import PipelineSpec
    from trainpipe_operator.manifests import JobIntent, Owner, stage_args

    volume = tmp_path / "artifacts"
    _run(volume / "same", "r-legacy", 100)  # the layout without namespaces
    _run(volume / "b" / "same", "r-b-old1", 200)
    _run(volume / "b" / "same", "r-b-old2", 300)
    for ns, keep in (("a", 1), ("b", 10)):
        spec = PipelineSpec.model_validate({"data": {"dir": "/data"}, "keepRuns": keep})
        owner = Owner(ns, "same", f"uid-{ns}")
        # The run the report finishes: its earlier stages were skipped, as on the cluster, so report is its first writer.
        args = [a.replace(spec.artifacts.mount_path, str(volume)).replace("/dev/termination-log", str(tmp_path / f"log-{ns}"))
                for a in stage_args(spec, owner, f"r-{ns}", JobIntent("report", None, 0, 1))]
        done = subprocess.run([sys.executable, "-m", "trainpipe.cli.main", *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert read_owner(volume / ns / "same") == FolderOwner(namespace=ns, name="same", uid=f"uid-{ns}")
    assert not (volume / "same").exists()
    assert _names(volume / "a" / "same") == [".trainpipe", "r-a", "r-legacy"], "a (keepRuns 1) keeps the runs moved from the old layout"
    assert _names(volume / "b" / "same") == [".trainpipe", "r-b", "r-b-old1", "r-b-old2"], "a's pruning never reached b's runs"
