"""`trainpipe status NAME`: what a TrainingPipeline in a cluster is doing, what it waits on and why, its last failure.

`kubectl get tp` stays the one-line view; this is the page a person reads when the line says Stalled or
the progress stops moving. Everything comes from the pipeline's status (written by the operator) and
the pods of its current run, read with the Kubernetes client (trainpipe.cli.cluster).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from trainpipe.cli.cluster import ClusterError, add_cluster_options, connect, get_pipeline
from trainpipe.contract.stages import STAGES
from trainpipe.contract.status import ConditionType
from trainpipe.kube.pods import ObservedPod

COLUMNS = ("STAGE", "ATTEMPT", "PENDING", "ACTIVE", "SUCCEEDED", "FAILED", "OUTCOME", "STARTED", "FINISHED")
CONDITIONS = tuple(c.value for c in ConditionType)


def add_parser(sub: Any) -> None:
    text = "Show a TrainingPipeline in the cluster: stages, progress, what it waits on and why, the last failure."
    p = sub.add_parser("status", help=text, description=text)
    add_cluster_options(p)
    p.set_defaults(cluster_command=run)


def run(args: argparse.Namespace) -> int:
    try:
        cluster = connect(args)
        pipeline = get_pipeline(cluster, args.name)
        pods = cluster.run_pods(pipeline) if (pipeline.get("status") or {}).get("runId") else []
    except ClusterError as err:
        print(f"trainpipe status: {err}", file=sys.stderr)
        return 1
    print(render(pipeline, pods))
    return 0


def render(pipeline: dict[str, Any], pods: Sequence[ObservedPod]) -> str:
    """The whole page as text (pure: tested without a cluster)."""
    meta, status = pipeline["metadata"], pipeline.get("status") or {}
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    lines = [f"TrainingPipeline {meta.get('namespace')}/{meta['name']}  generation {generation}"
             + (f" (status describes {observed})" if observed != generation else "")]
    if not status:
        lines.append("No status yet: is the trainpipe operator running and watching this namespace?")
        return "\n".join(lines)
    run = status.get("runId")
    lines.append(f"Run        {run or '-'}" + (f"  started {status['startedAt']}" if status.get("startedAt") else "")
                 + (f"  finished {status['finishedAt']}" if status.get("finishedAt") else ""))
    lines.append(f"Stage      {status.get('stage') or '-'}   progress {status.get('progress') or '-'} units")
    conds = {c["type"]: c for c in status.get("conditions") or []}
    lines.append("Conditions " + "  ".join(f"{t}={conds[t]['status']}" + (f" ({conds[t]['reason']})" if conds[t]["status"] == "True" else "")
                                           for t in CONDITIONS if t in conds))
    if status.get("outputPath"):
        lines.append(f"Outputs    {status['outputPath']}")
    last = status.get("lastSucceededRun")
    if last:
        lines.append(f"Last good  run {last['runId']} ({last['finishedAt']}): models in {last['modelsPath']}")
    lines += ["", *_stage_table(status.get("stages") or {})]
    waiting = _waiting(pipeline, conds, pods)
    if waiting:
        lines += ["", "Waiting on:", *(f"  {w}" for w in waiting)]
    failure = _last_failure(meta["name"], status, pods)
    if failure:
        lines += ["", "Last failure:", *(f"  {f}" for f in failure)]
    return "\n".join(lines)


def _stage_table(stages: dict[str, Any]) -> list[str]:
    rows = [COLUMNS]
    for stage in STAGES.order:
        s = stages.get(stage)
        if s is None:
            rows.append((stage, "-", "-", "-", "-", "-", "not started", "-", "-"))
            continue
        rows.append((stage, str(s.get("attempt", 0)), str(s.get("pending", 0)), str(s.get("active", 0)), str(s.get("succeeded", 0)),
                     str(s.get("failed", 0)), s.get("outcome") or ("waiting" if s.get("reason") else "running"),
                     s.get("startedAt") or "-", s.get("finishedAt") or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _waiting(pipeline: dict[str, Any], conds: dict[str, Any], pods: Sequence[ObservedPod]) -> list[str]:
    status = pipeline.get("status") or {}
    out: list[str] = []
    generation, observed = pipeline["metadata"].get("generation"), status.get("observedGeneration")
    if observed != generation:
        out.append(f"the operator to observe generation {generation} (this status was written for generation {observed})")
    if conds.get(ConditionType.SUSPENDED.value, {}).get("status") == "True":
        out.append("spec.suspend is true: set it to false to continue the same run")
    reconciling = conds.get(ConditionType.RECONCILING.value, {})
    if reconciling.get("status") == "True":
        out.append(f"{reconciling.get('reason')}: {reconciling.get('message') or status.get('message') or ''}".rstrip(": "))
        pending: dict[str, list[ObservedPod]] = {}
        for pod in pods:
            reason = pod.unschedulable or pod.waiting
            if reason:
                pending.setdefault(reason, []).append(pod)
        for reason, group in pending.items():  # one line per scheduler reason, however many units share it
            first = group[0]
            more = f" and {len(group) - 1} more" if len(group) > 1 else ""
            out.append(f"pod {first.name} ({_unit(first)}){more} Pending: {reason}")
    return out


def _unit(pod: ObservedPod) -> str:
    return (pod.stage or "?") + (f" {pod.family}" if pod.family else "") + (f" unit {pod.index}" if pod.index is not None else "")


def _last_failure(name: str, status: dict[str, Any], pods: Sequence[ObservedPod]) -> list[str]:
    out: list[str] = []
    failed = [(stage, s) for stage, s in (status.get("stages") or {}).items() if s.get("outcome") == "Failed"]
    stalled = next((c for c in status.get("conditions") or [] if c["type"] == ConditionType.STALLED.value and c["status"] == "True"), None)
    for stage, s in failed:
        out.append(f"stage {stage} ({s.get('reason') or 'Failed'}): {s.get('message') or ''}".rstrip(": "))
    if stalled and not failed:
        out.append(f"{stalled.get('reason')}: {stalled.get('message')}")
    broken = [pod for pod in pods if pod.phase == "Failed"]
    for pod in broken:
        detail = pod.said.splitlines()[-1] if pod.said else pod.status_message
        out.append(f"pod {pod.name} ({_unit(pod)}) exit {pod.exit_code}: {detail}".rstrip(": "))
    if broken:
        last = broken[-1]
        hint = f"trainpipe logs {name} --stage {last.stage}"
        if last.family:
            hint += f" --family {last.family}"
        if last.index is not None:
            hint += f" --unit {last.index}"
        out.append(f"its output: {hint}")
    return out
