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
