"""A stage's (or one select target's) completion record, `.trainpipe/<stage>.json`: what the cache and `--reuse-dir` trust.

Written last, after every output it lists; read by `trainpipe.runner.records` through `trainpipe.io.stage_files`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from trainpipe.contract.base import SnakeContract
from trainpipe.contract.names import STAGE_RECORD_SCHEMA_VERSION


class StageRecord(SnakeContract):
    SCHEMA_NAME: ClassVar[str] = "stage record"
    schema_version: str = STAGE_RECORD_SCHEMA_VERSION
    stage: str
    key: str = Field(description="Digest of every input of the stage: the record is current only while it matches")
    finished_at: str = Field(description="ISO-8601 UTC")
    outputs: tuple[str, ...] = Field(description="Relative to the output folder; the record is current only while all exist")
    # Kept as the file has it: the runner reads it as the stage's model (contract.summaries), and a select unit's as its SelectionEntry.
    summary: dict[str, Any] = Field(default_factory=dict, description="The stage's own summary (counts, kept targets)")
    unit: str | None = Field(None, description="The unit a unit record covers (a target for select)")
    reused_from: str | None = Field(None, description="The sibling run folder the outputs were copied from")


    def to_file(self) -> dict[str, Any]:
        """The file's JSON: `unit` and `reused_from` appear only when set."""
        wire = self.to_wire()
        return {k: v for k, v in wire.items() if v is not None or k not in ("unit", "reused_from")}
