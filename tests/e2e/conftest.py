"""End-to-end tier: the real CLI on the real example data; on failure the run's output is in the assertion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def trainpipe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed CLI as a user would; the output is kept for assertions and failure messages."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "trainpipe.cli.main", *args], capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=1200)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-6000:]}"
    return result


@pytest.fixture(scope="session")
def example_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "example"
    ok(trainpipe("data", "example", "--out", str(out)))
    return out


def machine_device(backend: str) -> str:
    """'cuda' when `backend` ('tf' or 'torch') sees a GPU on this machine, else 'cpu'.

    Probed in a fresh interpreter, as the training workers run: importing both frameworks into the test
    process would let one's CUDA initialisation decide for the other.
    """
    probe = {
        "torch": "import torch; print(torch.cuda.is_available())",
        "tf": "import tensorflow as tf; print(bool(tf.config.list_physical_devices('GPU')))",
    }[backend]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, f"probing {backend} failed:\n{result.stderr[-2000:]}"
    return "cuda" if result.stdout.strip().splitlines()[-1] == "True" else "cpu"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (SeaweedFS, built from Go modules and cached by hack/build-tools.sh), started once
    for the session on loopback with generated credentials and a bucket `trainpipe`; stopped, with its processes, at the end."""
    from trainpipe_localcluster import s3server

    server = s3server.start(tmp_path_factory.mktemp("s3"), buckets=["trainpipe"])
    try:
        yield server
    finally:
        s3server.stop(server)
