"""docs/tracking.md as written, against a real `mlflow server` (SQLite backend, local artefacts): a run tracked with nested runs,
the champion loaded from the registry reproducing metrics.json on the holdout, a rerun that duplicates nothing, and a run with
the server down that trains all the same and says "not tracked"."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, ok
from trainpipe.contract.cut import HoldoutCut
from trainpipe.io.layout import Layout

DOC = ROOT / "docs" / "tracking.md"
DOC_PORT = "5000"
EXPERIMENT = "trainpipe-demo"  # what the doc's run block names
# Telemetry off, as the jobs set it: nothing here may reach the internet.
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def doc_blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", DOC.read_text(), flags=re.M | re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(bin_dir: Path) -> dict[str, str]:
    """The doc's commands as a user runs them: `trainpipe` and `mlflow` on PATH (this checkout's trainpipe, the venv's mlflow)."""
    return os.environ | QUIET | {"PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                                 "PYTHONPATH": os.pathsep.join([str(ROOT / "jobs"), os.environ.get("PYTHONPATH", "")]), "COLUMNS": "200"}


def _run_block(block: str, port: int, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    script = block.replace(DOC_PORT, str(port))
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, example_data: Path) -> tuple[Path, dict[str, str]]:
    """A folder laid out as the doc assumes (data/example), and a `trainpipe` command on PATH."""
    cwd = tmp_path_factory.mktemp("tracking")
    (cwd / "data").mkdir()
    (cwd / "data" / "example").symlink_to(example_data)
    bin_dir = cwd / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "trainpipe"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m trainpipe.cli.main \"$@\"\n")
    shim.chmod(0o755)
    return cwd, _env(bin_dir)


class Server:
    """The doc's server block, on a free port, in its own process group (the server starts workers): stopped, the whole group."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = cwd / "server"
        self.dir.mkdir()
        self.log = open(self.dir / "server.log", "w")
        self.proc = subprocess.Popen(["bash", "-c", doc_blocks()[0].strip().replace(DOC_PORT, str(self.port))], cwd=self.dir,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, seconds: float = 180) -> str:
        """The URL once /health answers; a cold start imports all of MLflow: tens of seconds on a busy machine."""
        deadline = time.monotonic() + seconds
        while True:
            assert self.proc.poll() is None, f"mlflow server exited {self.proc.returncode}:\n{self._log_tail()}"
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self.url
            except OSError:
                pass
            assert time.monotonic() < deadline, f"mlflow server not healthy after {seconds:.0f} s:\n{self._log_tail()}"
            time.sleep(0.5)

    def _log_tail(self) -> str:
        return (self.dir / "server.log").read_text()[-3000:]

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def server(workdir) -> Iterator[Server]:
    started = Server(*workdir)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def runs(workdir, server) -> dict[str, subprocess.CompletedProcess]:
    """First with nothing listening (training must finish, not tracked; the server starts meanwhile), then the doc's block (every
    stage cached: only tracking runs), then the doc's block again (a rerun of tracking: nothing may be duplicated)."""
    cwd, env = workdir
    run_block = doc_blocks()[1]
    down = _run_block(run_block, _free_port(), cwd, env)
    server.wait_healthy()
    tracked = _run_block(run_block, server.port, cwd, env)
    again = _run_block(run_block, server.port, cwd, env)
    return {"down": down, "tracked": tracked, "again": again}


@pytest.fixture(scope="module")
def mlflow_server(server, runs) -> str:
    return server.url


def _client(url: str):
    from mlflow import MlflowClient

    os.environ.update(QUIET)
    return MlflowClient(url, url)


def test_a_run_with_the_server_down_trains_and_says_not_tracked(runs, workdir):
    down = ok(runs["down"])
    layout = Layout(workdir[0] / "out" / "tracked")
    assert "not tracked" in down.stdout + down.stderr
    assert list(layout.models_dir.glob("*/*/metrics.json")), "training finished"
    assert down.stdout.strip().splitlines()[-1].endswith("report.html")  # stdout still ends with the report's path


def test_one_parent_run_with_tags_and_a_nested_run_per_model(runs, workdir, mlflow_server):
    ok(runs["tracked"])
    ok(runs["again"])
    layout = Layout(workdir[0] / "out" / "tracked")
    record = json.loads(layout.tracking_record.read_text())
    assert record["state"] == "tracked", record
    client = _client(mlflow_server)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    plan = json.loads(layout.master_training_plan.read_text())
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.`trainpipe.pipeline` = 'pipeline'")
    assert len(parents) == 1, "a rerun finishes the same MLflow run"
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_id == record["mlflow_run_id"]
    tags = parent.data.tags
    assert tags["trainpipe.run_id"] == plan["metadata"]["run_id"] and len(tags["trainpipe.plan_digest"]) == 64
    assert tags["trainpipe.code_version"] == plan["metadata"]["code_version"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "plan"} <= artifacts
    children = client.search_runs([experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    files = sorted(layout.models_dir.glob("*/*/metrics.json"))
    assert len(children) == len(files) == record["units"], "one nested run per trained model, none twice"
    by_unit = {c.data.tags["trainpipe.unit"]: c for c in children}
    for path in files:
        metrics = json.loads(path.read_text())
        child = by_unit[f"{metrics['job_id']}/{metrics['family']}"]
        assert child.data.params["family"] == metrics["family"] and child.data.params["target"] == metrics["target"]
        for key in ("ic", "ic_low", "ic_high", "rank_ic", "hit_rate"):
            if metrics["metrics"].get(key) is not None:
                assert child.data.metrics[key] == pytest.approx(metrics["metrics"][key], abs=1e-12), key
        assert child.data.metrics["n_test"] == metrics["n_test"]
        assert child.data.tags["trainpipe.native_model"].startswith(metrics["family"]), child.data.tags["trainpipe.native_model"]


def test_the_champion_loads_from_the_registry_and_reproduces_its_holdout_metrics(runs, workdir, mlflow_server, example_data):
    import mlflow

    from trainpipe.cv import pinned_mask
    from trainpipe.data.frames import frame_symbols, frame_ts
    from trainpipe.data.loading import load_panel
    from trainpipe.training.metrics import evaluate
    from trainpipe.training.worker import job_rows, split_rows

    ok(runs["again"])
    layout = Layout(workdir[0] / "out" / "tracked")
    record = json.loads(layout.tracking_record.read_text())
    assert [r["name"] for r in record["registered"]] == ["pipeline-fwd_ret_5d"]
    chosen = record["registered"][0]
    client = _client(mlflow_server)
    versions = client.search_model_versions("name = 'pipeline-fwd_ret_5d'")
    assert len(versions) == 1, "a rerun registers no second version"
    assert client.get_model_version_by_alias("pipeline-fwd_ret_5d", "champion").version == chosen["version"]
    # The best by the plan's criterion (IC for returns) among the models with timing.
    candidates = [json.loads(p.read_text()) for p in layout.models_dir.glob("*/*/metrics.json")]
    timed = [m for m in candidates if m["timing"]["has_timing"] and m["metrics"]["ic"] is not None]
    best = max(timed, key=lambda m: m["metrics"]["ic"])
    assert (chosen["job_id"], chosen["family"]) == (best["job_id"], best["family"])

    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model("models:/pipeline-fwd_ret_5d@champion")
    plan = json.loads(layout.master_training_plan.read_text())
    cut = HoldoutCut.model_validate(plan["metadata"]["holdout_cut"])
    job = next(j for j in plan["jobs"] if j["job_id"] == best["job_id"])
    panel = load_panel(example_data, sorted(cut.symbols), min_rows_per_symbol=1)
    full = panel.frame.reset_index(drop=True)
    full = full.loc[pinned_mask(frame_ts(full), frame_symbols(full), cut)].reset_index(drop=True)
    _, test_rows = split_rows(job_rows(full, job["symbol"]), job["target"], cut, best["holdout"]["embargo_bars"])
    assert len(test_rows) == best["n_test"]
    pred = np.asarray(model.predict(test_rows), dtype=np.float64)
    again = evaluate(test_rows[job["target"]].to_numpy(dtype=np.float64), pred, frame_ts(test_rows), frame_symbols(test_rows), job["task"],
                     horizon_bars=best["holdout"]["horizon_bars"])
    for key in ("ic", "rank_ic", "hit_rate"):
        assert again[key] == pytest.approx(best["metrics"][key], abs=1e-6), key


def test_the_doc_loads_the_champion_as_written(runs, workdir, server):
    ok(runs["again"])
    cwd, env = workdir
    blocks = doc_blocks()
    assert len(blocks) == 3, "server, run, load: update this test with docs/tracking.md"
    loaded = ok(_run_block(blocks[2], server.port, cwd, env))
    numbers = re.findall(r"-?\d+\.\d+(?:e-?\d+)?", loaded.stdout)
    assert len(numbers) == 5, loaded.stdout


def test_a_failed_run_is_logged_as_failed_and_registers_nothing(runs, workdir, mlflow_server, tmp_path):
    """The tracking step itself, in this process, on a copy of the tracked run under another run id, told the run failed."""
    import shutil

    from trainpipe.contract.tracking import TrackingSpec
    from trainpipe.runner.steps.track import run_identity, track_step

    ok(runs["again"])
    layout = Layout(tmp_path / "failed")
    shutil.copytree(workdir[0] / "out" / "tracked", layout.root, symlinks=True)
    for job in sorted(layout.models_dir.iterdir())[1:]:  # one job's models are enough to log
        shutil.rmtree(job)
    identity = run_identity(layout, "pipeline", None, "failed-run")
    outcome = track_step(layout, TrackingSpec(mlflow_uri=mlflow_server, experiment=EXPERIMENT), identity, succeeded=False)
    assert outcome.state == "tracked" and outcome.registered == [], outcome
    client = _client(mlflow_server)
    run = client.get_run(outcome.mlflow_run_id)
    assert run.info.status == "FAILED" and run.data.tags["trainpipe.run_id"] == "failed-run"
    assert len(client.search_model_versions("name = 'pipeline-fwd_ret_5d'")) == 1
