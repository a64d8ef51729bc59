"""Cache keys per stage: each stage's key chains its upstream key with the settings it reads (pure)."""

from __future__ import annotations

from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.stages import STAGES
from trainpipe.runner.digests import digest_json


def stage_keys(spec: PipelineSpec, data_digest: str, code: str, run_id: str | None = None, plan_file: str | None = None,
               previous_run: str | None = None) -> dict[str, str]:
    """Changing a setting changes the key of the stage that reads it and of every stage downstream, nothing else.

    The run id (`--run-id`) is recorded in the plan, so it is an input of the plan and the stages after it:
    rank and select outputs carry over between runs of the same inputs, a plan is written per run.
    `plan_file` is the digest of a plan the plan stage did not write (`train --training-plan-dir`, or the
    seed's legacy folder): training then depends on that file, not on the plan stage's key alone.
    `previous_run` (`--previous-run`) is an input of the plan, not of select: select's stability against
    it is made again on a cached selection (`runner.steps.stability.refresh_previous`), and routing reads it.
    A computing stage added to the table reads no setting of its own: its key chains the key of the
    stage before it.
    """
    s = spec.to_wire()
    rank = digest_json({
        "stage": Stage.RANK, "code": code, "data": data_digest, "dataSpec": {k: v for k, v in s["data"].items() if k != "volume"}, "seed": s["seed"],
        "targets": s["targets"], "candidates": {"include": s["features"]["include"], "exclude": s["features"]["exclude"]},
        "ranking": s["ranking"],
        # The gates of rank, select and plan read it; every stage after rank chains this key.
        "evidence": s["evidence"],
        # The holdout is cut before ranking: its share decides which rows rank (and everything after) may read.
        "holdoutFraction": s["training"]["holdoutFraction"],
    })
    select = digest_json({"stage": Stage.SELECT, "up": rank, "selection": s["selection"], "features": s["features"]})
    plan_inputs = {
        "stage": Stage.PLAN, "up": select, "routing": s["routing"], "runId": run_id,
        "families": s["training"]["families"], "modelTypes": s["training"]["modelTypes"], "allowEmptyPlan": s["training"]["allowEmptyPlan"],
    }
    plan = digest_json(plan_inputs if previous_run is None else {**plan_inputs, "previousRun": previous_run})
    cpu_inputs = {"stage": Stage.CPU, "up": plan, "holdout": s["training"]["holdoutFraction"], "costBps": s["training"]["costBps"]}
    train_cpu = digest_json(cpu_inputs if plan_file is None else {**cpu_inputs, "planFile": plan_file})
    train_gpu = digest_json({"stage": Stage.GPU, "up": train_cpu})
    built_in: dict[str, str] = {Stage.RANK: rank, Stage.SELECT: select, Stage.PLAN: plan, Stage.CPU: train_cpu, Stage.GPU: train_gpu}
    keys: dict[str, str] = {}
    for stage in STAGES.computing:
        up = list(keys.values())[-1] if keys else digest_json({"code": code, "data": data_digest})
        keys[stage] = built_in.get(stage) or digest_json({"stage": stage, "up": up})
    return keys
