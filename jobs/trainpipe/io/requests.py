"""Worker request files: the one writer and the one reader of `request.json`; called by the training stage and the worker."""

from __future__ import annotations

from pathlib import Path

from trainpipe.contract.requests import WorkerRequest
from trainpipe.io import atomic
from trainpipe.io.model_files import read_model


class RequestFileError(ValueError):
    """A request file that is missing, not JSON, or not a worker request; the message names the file."""


def write_worker_request(path: Path, request: WorkerRequest) -> None:
    atomic.write_json(path, request.to_wire())


def read_worker_request(path: Path) -> WorkerRequest:
    return read_model(path, WorkerRequest, what="worker request", rerun="run the training stage", error=RequestFileError)
