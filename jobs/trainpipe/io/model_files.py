"""One JSON file read through its contract model: the single place that turns a missing, unreadable or
off-schema file into an error naming the file and the command that rewrites it.

Each artefact module (`stage_files`, `training_files`, `plan_files`, `requests`) keeps its own error class,
so callers and exit codes can tell which stage's output is at fault, and passes it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from trainpipe.contract.pipeline import format_validation_error

_Model = TypeVar("_Model", bound=BaseModel)


def read_model(path: Path, model: type[_Model], *, what: str, rerun: str, error: type[Exception]) -> _Model:
    """`path` parsed as `model`; `what` names the file's kind ("routing plan"), `rerun` the command that writes it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{path} is missing: {rerun} first") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc}); {rerun} to rewrite it") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        # Not JSON at all is reported the same way: pydantic names it (`json_invalid`) with the position.
        raise error(f"{path}: not a valid {what}: {format_validation_error(exc)}; {rerun} to rewrite it") from None
