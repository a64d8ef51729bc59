"""The builders the operator's unit tests share: a pipeline as the operator reads it, its Jobs and pods,
and statuses in which stages already finished. Each test module keeps its own spec and run; these take
them as arguments so that a Job or a view is built one way everywhere."""

from __future__ import annotations

from typing import Any

from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.stages import STAGES
from trainpipe.contract.status import PipelineStatus, StageStatus
from trainpipe_operator.naming import job_name
from trainpipe_operator.observed import ObservedJob, PipelineView

PIPELINE, NAMESPACE, UID = "demo", "ns", "uid-1"
STARTED, FINISHED = "2026-12-01T11:00:00Z", "2026-12-01T11:01:00Z"


def pipeline_view(spec: PipelineSpec, status: PipelineStatus | None = None, *, generation: int = 1, rerun: str | None = None,
                  retry: str | None = None) -> PipelineView:
    return PipelineView(namespace=NAMESPACE, name=PIPELINE, uid=UID, generation=generation, spec=spec, spec_error=None,
                        status=status or PipelineStatus(), rerun_token=rerun, retry_token=retry)


def observed_job(stage: str, family: str | None = None, *, run: str, attempt: int = 0, completions: int = 1, **fields: Any) -> ObservedJob:
    """A Job of the pipeline as observed: named and indexed as the operator makes it (its stage's row)."""
    return ObservedJob(name=job_name(PIPELINE, run, stage, family, attempt), run=run, stage=stage, family=family, attempt=attempt,
                       completions=completions, indexed=STAGES[stage].indexed, **fields)


def succeeded_stages(*finished: str) -> dict[str, StageStatus]:
    """The status's record of `finished` stages, each succeeded with one unit."""
    return {s: StageStatus(succeeded=1, outcome="Succeeded", started_at=STARTED, finished_at=FINISHED) for s in finished}
