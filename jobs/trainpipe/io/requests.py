"""Worker request files: the one writer and the one reader of `request.json`; called by the training stage and the worker."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from trainpipe.contract.pipeline import format_validation_error
from trainpipe.contract.requests import WorkerRequest
from trainpipe.io import atomic


class RequestFileError(ValueError):
    """A request file that is missing, not JSON, or not a worker request; the message names the file."""


def write_worker_request(path: Path, request: WorkerRequest) -> None:
    atomic.write_json(path, request.to_wire())


def read_worker_request(path: Path) -> WorkerRequest:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RequestFileError(f"{path}: cannot read the worker request ({exc}); rerun the training stage to rewrite it") from None
    try:
        return WorkerRequest.model_validate_json(text)
    except ValidationError as exc:
        raise RequestFileError(f"{path}: not a worker request: {format_validation_error(exc)}; rerun the training stage to rewrite it") from None
