"""Stage completion records: a stage is reused when its input key matches and its outputs still exist."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from trainpipe.io.atomic import write_json
from trainpipe.io.layout import Layout


@dataclass(frozen=True)
class StageRecord:
    stage: str
    key: str
    finished_at: str
    outputs: tuple[str, ...]
    summary: dict


def read_record(layout: Layout, stage: str) -> StageRecord | None:
    path = layout.stage_record(stage)
    try:
        raw = json.loads(path.read_text())
        return StageRecord(raw["stage"], raw["key"], raw["finished_at"], tuple(raw["outputs"]), raw.get("summary", {}))
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return None


def is_fresh(layout: Layout, stage: str, key: str) -> bool:
    record = read_record(layout, stage)
    if record is None or record.key != key:
        return False
    return all((layout.root / out).exists() for out in record.outputs)


def write_record(layout: Layout, stage: str, key: str, outputs: list[str], summary: dict) -> None:
    write_json(
        layout.stage_record(stage),
        {
            "stage": stage,
            "key": key,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "outputs": sorted(outputs),
            "summary": summary,
        },
    )


def clear_record(layout: Layout, stage: str) -> None:
    layout.stage_record(stage).unlink(missing_ok=True)
