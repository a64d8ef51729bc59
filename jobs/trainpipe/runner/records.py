"""Completion records of stages and units: a stage (or unit) is reused when its input key matches and its outputs still exist.

A stage record lives at `.trainpipe/<stage>.json`; a unit record (one select target) at its own path, so
parallel pods never write the same record. Each is written atomically, after the outputs it lists.
"""

from __future__ import annotations

from pathlib import Path

from trainpipe.contract.records import StageRecord
from trainpipe.contract.timestamps import stamp
from trainpipe.io import stage_files
from trainpipe.io.layout import Layout


def read_record_at(path: Path) -> StageRecord | None:
    """The record at `path`, or None when there is none or it cannot be trusted (then the stage or unit simply runs again)."""
    try:
        return stage_files.read_record(path)
    except stage_files.StageFileError:
        return None


def read_record(layout: Layout, stage: str) -> StageRecord | None:
    return read_record_at(layout.stage_record(stage))


def outputs_exist(root: Path, record: StageRecord) -> bool:
    return all((root / out).exists() for out in record.outputs)


def is_fresh_at(root: Path, path: Path, key: str) -> bool:
    """The record at `path` has this key and every output it lists still exists under `root`."""
    record = read_record_at(path)
    return record is not None and record.key == key and outputs_exist(root, record)


def is_fresh(layout: Layout, stage: str, key: str) -> bool:
    return is_fresh_at(layout.root, layout.stage_record(stage), key)


def write_record_at(path: Path, stage: str, key: str, outputs: list[str], summary: dict, *,
                    unit: str | None = None, reused_from: str | None = None) -> None:
    finished_at = stamp()
    stage_files.write_record(path, StageRecord(stage=stage, key=key, finished_at=finished_at, outputs=tuple(sorted(outputs)),
                                               summary=summary, unit=unit, reused_from=reused_from))


def write_record(layout: Layout, stage: str, key: str, outputs: list[str], summary: dict, *, reused_from: str | None = None) -> None:
    write_record_at(layout.stage_record(stage), stage, key, outputs, summary, reused_from=reused_from)


def clear_record(layout: Layout, stage: str) -> None:
    layout.stage_record(stage).unlink(missing_ok=True)
