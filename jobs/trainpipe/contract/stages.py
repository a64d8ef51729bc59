"""What each stage is, one row per stage, read by both sides.

The operator fans a stage out into Jobs, builds their command lines, picks their image and nodes, counts
the run's progress and knows which pods leave a report from this table; the runner and the CLI run the
same commands. What a stage does beyond its row is its step function on the jobs side and, when it
reports something the operator sizes the next stage by, its report model (`contract.reports`).

A stage is named by a string (the `Stage` members are the built-in ones), and everything that walks the
stages asks `STAGES` when it runs, never a tuple taken at import: a stage added to the table
(`STAGES.added(row, after=...)`) is then fanned out, run, counted and reported like the others. Its
scheduling settings are `spec.stages.<name>` when the spec has that block, the defaults otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from trainpipe.contract.names import Stage
from trainpipe.contract.reports import HtmlReport, PlanReport, RankReport, StageReport


class FanOut(StrEnum):
    """How many units (pods) a stage runs, in how many Jobs."""

    SINGLE = "single"  # one Job of one unit
    PER_TARGET = "per-target"  # one Indexed Job, a unit per target rank kept (its report's `selected`)
    PER_PLAN_UNIT = "per-plan-unit"  # an Indexed Job per family of the stage in the plan, a unit per planned model


class Pool(StrEnum):
    """Whose image and nodes a stage's pods get: spec.images.<pool>, the operator's --<pool>-image and node settings."""

    CPU = "cpu"
    GPU = "gpu"


@dataclass(frozen=True)
class StageRow:
    stage: str  # a Stage member for the built-in stages: the CLI word, cache record, Job name part and label value
    fan_out: FanOut
    pool: Pool
    command: tuple[str, ...]  # the `trainpipe` words that run one unit of it
    # What a finished pod's termination message carries into the pipeline's status.
    report: type[StageReport] | None = None
    # Computes from the data and the spec, cached by the digest of its inputs (the report only renders files).
    computes: bool = True
    # A later run with the same inputs copies its outputs from an earlier run folder instead of computing them.
    reusable: bool = False
    # Its command takes `--previous-run <the pipeline's last succeeded run folder>` (select grades its
    # stability against that run's selection; every cluster run writes its own folder).
    compares_previous_run: bool = False

    @property
    def indexed(self) -> bool:
        """An Indexed Job: each pod's JOB_COMPLETION_INDEX names its unit, and retries are per index."""
        return self.fan_out is not FanOut.SINGLE

    @property
    def trains(self) -> bool:
        return self.fan_out is FanOut.PER_PLAN_UNIT


class StageTable(Mapping[str, StageRow]):
    """The rows in run order. One instance (`STAGES`), read at run time by both sides."""

    def __init__(self, rows: tuple[StageRow, ...]) -> None:
        self._rows = {row.stage: row for row in rows}

    def __getitem__(self, stage: str) -> StageRow:
        try:
            return self._rows[stage]
        except KeyError:
            raise KeyError(f"{stage!r} is not a stage; the stages are {', '.join(self._rows)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def where(self, keep: Callable[[StageRow], bool]) -> tuple[str, ...]:
        """The stages whose row `keep` accepts, in run order."""
        return tuple(stage for stage, row in self._rows.items() if keep(row))

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(self._rows)

    @property
    def computing(self) -> tuple[str, ...]:
        """The stages cached by the digest of their inputs: all but the report, which only renders them."""
        return self.where(lambda r: r.computes)

    @property
    def training(self) -> tuple[str, ...]:
        return self.where(lambda r: r.trains)

    @property
    def reusable(self) -> tuple[str, ...]:
        return self.where(lambda r: r.reusable)

    @contextmanager
    def added(self, row: StageRow, *, after: str) -> Iterator[StageRow]:
        """The table with `row` run right after stage `after`, for the duration of the block (an extension's or a test's stage)."""
        if row.stage in self._rows:
            raise ValueError(f"stage {row.stage!r} is already in the table")
        before = dict(self._rows)
        at = self.order.index(self[after].stage) + 1
        items = list(before.items())
        self._rows = dict([*items[:at], (row.stage, row), *items[at:]])
        try:
            yield row
        finally:
            self._rows = before


STAGES = StageTable((
    StageRow(Stage.RANK, FanOut.SINGLE, Pool.CPU, ("rank",), report=RankReport, reusable=True),
    StageRow(Stage.SELECT, FanOut.PER_TARGET, Pool.CPU, ("select",), reusable=True, compares_previous_run=True),
    StageRow(Stage.PLAN, FanOut.SINGLE, Pool.CPU, ("plan",), report=PlanReport, reusable=True),
    StageRow(Stage.CPU, FanOut.PER_PLAN_UNIT, Pool.CPU, ("train", "--stage", Stage.CPU.value)),
    StageRow(Stage.GPU, FanOut.PER_PLAN_UNIT, Pool.GPU, ("train", "--stage", Stage.GPU.value)),
    StageRow(Stage.REPORT, FanOut.SINGLE, Pool.CPU, ("report",), report=HtmlReport, computes=False),
))
if STAGES.order != tuple(Stage):  # a row per built-in stage, in the order they run
    raise AssertionError(f"contract.stages.STAGES lists {STAGES.order}, the built-in stages are {tuple(Stage)}")
