"""Files of the rank and select stages and the stage records: the one writer and the one reader of each.

* `ranking/target_rankings.json` (`RankingsFile`) and `ranking/data_files.json` (`DataPins`), written by rank;
* `selection/<target>/selected_features.json` (`TargetSelection`) and `selection/selection_summary.json`
  (`SelectionSummary`), written by select;
* `.trainpipe/<stage>.json` and select unit records (`StageRecord`), written by the runner.

Called by `trainpipe.runner`, `trainpipe.report` and the tests. Every file goes through its contract model
on write and on read; a reader names the file and the command that rewrites it when the file is missing or
does not match its schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from trainpipe.contract.base import Contract
from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.rankings import DataPins, RankingsFile
from trainpipe.contract.records import StageRecord
from trainpipe.contract.selection import SelectionSummary, TargetSelection
from trainpipe.io import atomic
from trainpipe.io.layout import Layout
from trainpipe.io.model_files import read_model

_Model = TypeVar("_Model", bound=Contract)

RERUN_RANK = "run `trainpipe rank`"
RERUN_SELECT = "run `trainpipe select` (or `trainpipe select --target T` for one target)"


class StageFileError(ValueError, CommandFailure):
    """A rank or select artefact that is missing, not JSON, or not its schema; the message names the file and what to run."""

    exit_code = ExitCode.MISSING_INPUT


def _read(path: Path, model: type[_Model], what: str, rerun: str) -> _Model:
    return read_model(path, model, what=what, rerun=rerun, error=StageFileError)


# ---------------------------------------------------------------- rank


def write_rankings(layout: Layout, rankings: RankingsFile) -> None:
    atomic.write_json(layout.rankings_json, rankings.to_wire())


def read_rankings(layout: Layout) -> RankingsFile:
    return _read(layout.rankings_json, RankingsFile, "rankings file", RERUN_RANK)


def write_data_pins(layout: Layout, pins: DataPins) -> None:
    atomic.write_json(layout.data_pins_json, pins.to_wire())


def read_data_pins(layout: Layout) -> DataPins:
    return _read(layout.data_pins_json, DataPins, "data pins file", RERUN_RANK)


# ---------------------------------------------------------------- select


def write_selection(layout: Layout, selection: TargetSelection) -> None:
    atomic.write_json(layout.selected_features(selection.target), selection.to_wire())


def read_selection(layout: Layout, target: str) -> TargetSelection:
    selection = _read(layout.selected_features(target), TargetSelection, "feature selection", RERUN_SELECT)
    if selection.target != target:
        raise StageFileError(f"{layout.selected_features(target)} holds the selection of {selection.target!r}, not {target!r}; "
                             f"{RERUN_SELECT} to rewrite it")
    return selection


def write_selection_summary(layout: Layout, summary: SelectionSummary) -> None:
    atomic.write_json(layout.selection_summary, summary.to_wire())


def read_previous_features(layout: Layout, target: str) -> list[str]:
    """The features an earlier run's selection of `target` kept, from its file of any schema version.

    Only the list is read: a run made before an upgrade of the file's schema is still a run to compare
    with. StageFileError when the file is missing, unreadable or holds no such list for `target`.
    """
    path = layout.selected_features(target)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise StageFileError(f"{path} is missing (that run did not select {target!r})") from None
    except (OSError, ValueError) as exc:
        raise StageFileError(f"{path}: cannot read it ({exc})") from None
    features = raw.get("features") if isinstance(raw, dict) else None
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features) or raw.get("target") != target:
        raise StageFileError(f"{path}: not a selection of {target!r} with a list of features")
    return features


def read_selection_summary(layout: Layout) -> SelectionSummary:
    return _read(layout.selection_summary, SelectionSummary, "selection summary", RERUN_SELECT)


# ---------------------------------------------------------------- stage records


def write_record(path: Path, record: StageRecord) -> None:
    atomic.write_json(path, record.to_file())


def read_record(path: Path) -> StageRecord:
    """The record at `path`; StageFileError when it is missing or unreadable (the cache then treats the stage as not done)."""
    return _read(path, StageRecord, "stage record", "rerun the stage")
