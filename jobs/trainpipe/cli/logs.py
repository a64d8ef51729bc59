"""`trainpipe logs NAME --stage S`: the last lines of a unit's pod output, the failing unit's by default.

Pods are found by the labels every pod of a run carries (pipeline, run, stage, family) and the Indexed
Job's completion index (the unit). The plan that maps units to targets lives on the artifacts volume,
which a client outside the cluster cannot read, so `--target` matches what the pods themselves said:
their termination messages (a select unit names its target; a failed unit names itself).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from trainpipe.cli.cluster import ClusterError, add_cluster_options, connect, get_pipeline
from trainpipe.contract.names import LABEL_FAMILY, LABEL_STAGE
from trainpipe.contract.stages import STAGES
from trainpipe.kube.pods import ObservedPod

DEFAULT_TAIL = 50


def add_parser(sub: Any) -> None:
    text = "Print the last lines of a stage's pod output: the failing unit's, or the one picked by --family/--unit/--target."
    p = sub.add_parser("logs", help=text, description=text)
    add_cluster_options(p)
    p.add_argument("--stage", required=True, choices=list(STAGES.order), help="The stage whose pods to read.")
    p.add_argument("--family", metavar="F", help="Only this family's units (cpu and gpu stages).")
    p.add_argument("--unit", type=int, metavar="I", help="Only unit I (the Indexed Job's completion index).")
    p.add_argument("--target", metavar="T", help="Only units whose termination message names this target.")
    p.add_argument("--tail", type=int, default=DEFAULT_TAIL, metavar="N", help=f"Lines from the end of each log (default {DEFAULT_TAIL}; 0: all).")
    p.add_argument("--all", action="store_true", help="Every matching pod, not only the failing (or latest) one per unit.")
    p.set_defaults(cluster_command=run)


def run(args: argparse.Namespace) -> int:
    try:
        cluster = connect(args)
        pipeline = get_pipeline(cluster, args.name)
        labels = {LABEL_STAGE: args.stage} | ({LABEL_FAMILY: args.family} if args.family else {})
        pods = pick(cluster.run_pods(pipeline, **labels), unit=args.unit, target=args.target, every=args.all)
    except ClusterError as err:
        print(f"trainpipe logs: {err}", file=sys.stderr)
        return 1
    if not pods:
        what = " ".join(f"{k} {v}" for k, v in (("stage", args.stage), ("family", args.family), ("unit", args.unit), ("target", args.target)) if v is not None)
        print(f"trainpipe logs: no pod of the current run of {args.name} matches {what}"
              + (" (targets are matched in termination messages; try --unit I)" if args.target else ""), file=sys.stderr)
        return 1
    failed = False
    for pod in pods:
        print(header(pod))
        try:
            text = cluster.log(pod.name, None, args.tail or None)
        except ClusterError as err:
            print(f"(no log: {err})")
            failed = True
            continue
        print(text.rstrip("\n"))
    return 1 if failed else 0


def pick(pods: Sequence[ObservedPod], unit: int | None = None, target: str | None = None, every: bool = False) -> list[ObservedPod]:
    """The pods to show (pure): matching unit/target; unless `every`, per unit its latest failed pod, else its latest pod,
    and only failing units when any unit failed."""
    if unit is not None:
        pods = [p for p in pods if p.index == unit]
    if target is not None:
        spellings = {target, target.replace("_", "-")}
        pods = [p for p in pods if any(s in p.said for s in spellings)]
    if every:
        return list(pods)
    by_unit: dict[tuple[str | None, int | None], list[ObservedPod]] = {}
    for pod in pods:  # oldest first: the last one of a unit is its latest attempt
        by_unit.setdefault((pod.family, pod.index), []).append(pod)
    chosen = []
    for attempts in by_unit.values():
        bad = [p for p in attempts if p.phase == "Failed"]
        chosen.append(bad[-1] if bad else attempts[-1])
    failing = [p for p in chosen if p.phase == "Failed"]
    return failing or chosen


def header(pod: ObservedPod) -> str:
    parts = [pod.stage or "?", *([pod.family] if pod.family else []), *([f"unit {pod.index}"] if pod.index is not None else [])]
    state = pod.phase + (f", exit {pod.exit_code}" if pod.exit_code is not None else "")
    said = f"\n    termination message: {pod.said.splitlines()[-1]}" if pod.said else ""
    return f"==> pod {pod.name} ({' '.join(parts)}; {state}) <=={said}"
