"""Result files of the training stages: the one writer and reader of each; called by the training stage and its worker.

`results.jsonl` gets one `UnitResult` line per unit as soon as the unit ends (flushed and synced, so the
parent reads it while the worker still runs, and a worker that dies keeps the lines it wrote). `result.json`
of a stage or of a unit run alone is written atomically at the end. Paths come from `trainpipe.training.stage.WorkFiles`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from trainpipe.contract.pipeline import format_validation_error
from trainpipe.contract.results import StageResultFile, UnitResult, UnitRunResult
from trainpipe.io import atomic
from trainpipe.io.model_files import read_model

_Model = TypeVar("_Model", StageResultFile, UnitRunResult)


class TrainingFileError(ValueError):
    """A training result file that is missing or not its schema; the message names the file."""


def append_unit_result(path: Path, result: UnitResult) -> None:
    with open(path, "a") as handle:
        handle.write(result.model_dump_json(by_alias=True, exclude_none=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_unit_results(path: Path) -> list[UnitResult]:
    """Every whole line of a worker's results file, in order; none when the worker wrote none yet.

    A line cut short by a crash mid-write is not a unit's result: it is skipped, and the unit counts as
    not finished. A whole line that is not a `UnitResult` means the worker and this code disagree: that is an error.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            out.append(UnitResult.model_validate_json(line))
        except ValidationError as exc:
            if number == len(lines) and not text.endswith("\n"):
                continue  # the last line, cut by a crash mid-write
            raise TrainingFileError(f"{path}:{number}: not a unit result: {format_validation_error(exc)}; "
                                    "the worker and the training stage are different trainpipe versions, rerun the stage") from None
    return out


def write_stage_result(path: Path, result: StageResultFile) -> None:
    atomic.write_json(path, result.to_wire())


def read_stage_result(path: Path) -> StageResultFile:
    return read_model(path, StageResultFile, what="training stage result", rerun="run `trainpipe train --stage <stage>`",
                      error=TrainingFileError)


def write_unit_run_result(path: Path, result: UnitRunResult) -> None:
    atomic.write_json(path, result.to_wire())


def read_unit_run_result(path: Path) -> UnitRunResult:
    return read_model(path, UnitRunResult, what="training unit result",
                      rerun="run the unit (`trainpipe train --family F --unit-index I`)", error=TrainingFileError)
