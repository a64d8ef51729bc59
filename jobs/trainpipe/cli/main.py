"""`trainpipe` command line: one subcommand per stage (what each Kubernetes Job runs) and `run` chaining them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from trainpipe import __version__
from trainpipe.cli.exits import EPILOG_TABLE, UsageError
from trainpipe.contract.names import Stage
from trainpipe.contract.outcomes import Outcome
from trainpipe.contract.stages import STAGES

if TYPE_CHECKING:
    from trainpipe.contract.reports import CommandReport

EPILOG = """\
examples:
  trainpipe data example --out data/example
  trainpipe run --data-dir data/example --auto-targets --auto-features --output-dir out/demo
  trainpipe run -f pipeline.yaml                      # the spec of a TrainingPipeline manifest
  trainpipe rank --data-dir data/example --output-dir out/demo   # one stage, as a Job runs it
  trainpipe select --unit-index 0 --data-dir data/example --output-dir out/demo   # one target, as one pod runs it
  trainpipe train --stage cpu --data-dir data/example --output-dir out/demo
  trainpipe train --stage cpu --data-dir data/example --output-dir out/demo --training-plan-dir old_run/METRICS/training_plan
  trainpipe train --stage cpu --family lightgbm --unit-index 0 --data-dir data/example --output-dir out/demo

""" + EPILOG_TABLE


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so a usage error also reaches --termination-log with its exit code."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    from trainpipe.cli.options import (
        add_pipeline_options,
        add_previous_run_option,
        add_run_options,
        add_spec_source,
        add_tracking_options,
        groups_arg,
        output_location,
        plan_digest_arg,
        unit_index_arg,
    )

    parser = _Parser(
        prog="trainpipe",
        description="Target ranking → feature selection → routing & training plan → CPU then GPU training.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trainpipe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="Datasets: build the bundled real-price example.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    example = data_sub.add_parser("example", help="Build the 6-symbol daily example (AAPL AMZN GOOG META NFLX NVDA, 2013–2023) with features and targets.")
    example.add_argument("--out", type=Path, required=True, metavar="DIR", help="Folder to write symbol=<SYM>/<SYM>.parquet into.")

    stage_help = {
        "run": "Run the whole pipeline (rank → select → plan → train cpu → train gpu) and write report.html.",
        "rank": "Rank targets by purged walk-forward out-of-sample skill; keep the top N.",
        "select": "Select features per kept target by a consensus of importance methods (all kept targets, or one with --target/--unit-index).",
        "plan": "Route targets (cross-sectional / symbol-specific) and write the training plan.",
        "train": "Train the plan's models of one stage (cpu or gpu) on a purged time-ordered holdout (all, one family, or one unit).",
    }
    for name, text in stage_help.items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_pipeline_options(p)
        add_run_options(p)
        if name in ("select", "run"):
            add_previous_run_option(p)
        if name == "rank":
            fan = p.add_argument_group("one target group (stages.rank.targetGroups > 1: one pod of the rank Job, then the aggregate)")
            fan = fan.add_mutually_exclusive_group()
            fan.add_argument("--unit-index", type=unit_index_arg, metavar="I",
                             help="Score only target group I (from 0) of stages.rank.targetGroups and write its part under ranking/parts/.")
            fan.add_argument("--aggregate", action="store_true",
                             help="Merge the groups' parts into the ranking (every unit must have run with the same settings).")
            p.add_argument("--groups", type=groups_arg, metavar="N", default=None,
                           help="Target groups (default: stages.rank.targetGroups of the spec); the operator passes it, since the spec "
                                "file its pods read leaves out the stages' scheduling settings.")
        if name == "select":
            one = p.add_argument_group("one unit (one pod of the select Job)").add_mutually_exclusive_group()
            one.add_argument("--target", metavar="T", help="Select features for this kept target only.")
            one.add_argument("--unit-index", type=unit_index_arg, metavar="I",
                              help="Select features for the I-th target (from 0) of `selected` in ranking/target_rankings.json only.")
        if name == "train":
            p.add_argument("--stage", choices=list(STAGES.training), required=True, help="cpu: tree/linear/probabilistic families; gpu: TensorFlow and PyTorch families (run on CPU when no GPU is present).")
            unit = p.add_argument_group("one family or one unit (one pod of a family's Indexed Job)")
            unit.add_argument("--family", metavar="F", help="Train only this family's units (a family of --stage).")
            unit.add_argument("--unit-index", type=unit_index_arg, metavar="I",
                              help="With --family: train only unit I (from 0) of the family, in the order of contract.units.family_units.")
            unit.add_argument("--plan-digest", type=plan_digest_arg, metavar="D",
                              help="Refuse (exit 6, STALE_PLAN) unless the plan on the volume has this digest (`trainpipe plan` reports it).")
            p.add_argument("--training-plan-dir", type=Path, metavar="DIR",
                           help="Train the plan in DIR (its master_training_plan.json, or training_plan.json) instead of the one found in the "
                                "output folder (globals/training_plan/, then the seed's legacy METRICS/training_plan/).")
        if name == "run":
            p.add_argument("--skip-training", action="store_true", help="Stop after the plan (rank, select, plan only).")
            add_tracking_options(p)
    _add_table_stage_parsers(sub, set(stage_help) | {"report"})

    report = sub.add_parser("report", help="Rebuild report.html from an output folder.")
    report.add_argument("--output-dir", type=output_location, required=True, metavar="DIR")
    add_spec_source(report.add_argument_group("pipeline (validated only: the report renders what the output folder holds)"))
    add_run_options(report, reuse_help="The pipeline's folder of run folders (<artifacts>/<pipeline>); with --keep-runs, older runs there are removed.")
    report.add_argument("--keep-runs", type=int, metavar="N",
                        help="Finish a successful run (the operator's last step): record this run as succeeded, then keep the N newest "
                             "successful run folders in --reuse-dir (this one among them); failed runs never count, nothing newer "
                             "than this run is touched. [spec.keepRuns]")
    report.add_argument("--pin", action="append", default=[], metavar="RUN",
                        help="With --keep-runs: a run folder never removed (repeatable; the operator passes lastSucceededRun and "
                             "the trainpipe.io/pin annotation's runs).")
    add_tracking_options(report)

    # Reading a pipeline in a cluster (the Kubernetes client, from the operator extra, is imported only when they run).
    from trainpipe.cli import logs, status

    status.add_parser(sub)
    logs.add_parser(sub)
    return parser


def _add_table_stage_parsers(sub, taken: set[str]) -> None:
    """A subcommand for each stage of the table that has none written above, so that its Jobs' command parses.

    Such a stage runs whole in one pod (its step over the run's context); a stage that fans out into
    units needs its own unit options, written above like select's and train's.
    """
    from trainpipe.cli.options import add_pipeline_options, add_run_options
    from trainpipe.contract.stages import FanOut

    for stage, row in STAGES.items():
        if row.command[0] in taken:
            continue
        if row.fan_out is not FanOut.SINGLE or len(row.command) != 1:
            raise RuntimeError(f"stage {stage!r} ({row.fan_out.value}, command {' '.join(row.command)!r}) needs its own "
                               "subcommand in trainpipe.cli.main: only a single-unit stage of one word gets one from the table")
        text = f"Run the {stage} stage."
        p = sub.add_parser(row.command[0], help=text, description=text)
        add_pipeline_options(p)
        add_run_options(p)


def _stage_of(command: str) -> str:
    """The stage a stage subcommand (not train, not run) runs: the row whose command is that word."""
    return next(stage for stage, row in STAGES.items() if row.command == (command,))


def main(argv: list[str] | None = None) -> int:
    from trainpipe.cli.exits import exit_code_for, known_failure
    from trainpipe.contract.exitcodes import ExitCode
    from trainpipe.termination import Terminated, sigterm_raises

    args_list = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(args_list)
    except UsageError as exc:
        print(f"usage error: {exc} (see `trainpipe --help`)", file=sys.stderr)
        _log_failure(_termination_log_in(args_list), "trainpipe", ExitCode.INVALID_SPEC, str(exc))
        return int(ExitCode.INVALID_SPEC)
    if getattr(args, "cluster_command", None) is not None:  # status, logs: no stage, no termination log
        return int(args.cluster_command(args))
    log_path = getattr(args, "termination_log", None)
    where = [_where(args)]  # a select unit names its target once it is known
    try:
        with sigterm_raises():
            report = _dispatch(args, where)
    except Terminated as exc:
        print(f"{exc}; finished stages and units are kept and a rerun resumes after them", file=sys.stderr)
        _log_failure(log_path, where[0], ExitCode.TERMINATED, str(exc))
        return int(ExitCode.TERMINATED)
    except KeyboardInterrupt:
        print("interrupted; finished stages are kept and a rerun resumes after them", file=sys.stderr)
        _log_failure(log_path, where[0], ExitCode.UNIT_FAILED, "interrupted")
        return 130
    except Exception as raised:  # noqa: BLE001 — every known failure becomes one clear line and its exit code, not a traceback
        failure = known_failure(raised)
        code = exit_code_for(failure)
        _log_failure(log_path, where[0], code or ExitCode.UNIT_FAILED, str(failure) if code is not None else f"{type(failure).__name__}: {failure}")
        if code is None:
            raise  # a bug: keep the traceback (exit 1, retried like a unit failure)
        from trainpipe.cli.display import console

        console.print(f"[bold red]error:[/] {failure}", highlight=False, markup=False)
        if code is ExitCode.UNIT_FAILED:
            console.print("rerun the same command to retry only the failed units", highlight=False)
        return int(code)
    if log_path is not None:
        from trainpipe.cli.termination import success_line, write_termination_log

        write_termination_log(log_path, success_line(report.to_wire(), optional=("targets", "stages")))
    return 0


def _where(args: argparse.Namespace) -> str:
    """The stage and unit a failure line names, from the flags (before anything is read)."""
    if args.command == "rank" and getattr(args, "unit_index", None) is not None:
        return f"rank unit {args.unit_index}"
    if args.command == "select":
        if args.target is not None:
            return f"select target {args.target}"
        return "select" if args.unit_index is None else f"select unit {args.unit_index}"
    if args.command == "train":
        where = args.stage
        if args.family is not None:
            where += f" family {args.family}"
        return where if args.unit_index is None else f"{where} unit {args.unit_index}"
    return args.command


def _log_failure(path: Path | None, where: str, code, message: str) -> None:
    if path is None:
        return
    from trainpipe.cli.termination import failure_line, write_termination_log

    write_termination_log(path, failure_line(where, code, message))


def _termination_log_in(argv: list[str]) -> Path | None:
    """--termination-log from raw arguments argparse refused, so even a usage error reaches the operator."""
    for i, arg in enumerate(argv):
        if arg == "--termination-log" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--termination-log="):
            return Path(arg.split("=", 1)[1])
    return None


def _dispatch(args: argparse.Namespace, where: list[str]) -> CommandReport:
    if args.command == "data":
        return _data_example(args.out)
    if args.command == "report":
        return _report(args)
    return _stages(args, where)


# The completion record of the report (after the computing stages': it is the run's last publication).
REPORT_RECORD = "report"


def staged_output(where: Path | str):
    """An object-store output dir as a StagedOutput, its staging folder pulled to the store's newest snapshot; None for a folder."""
    if not isinstance(where, str):
        return None
    from trainpipe.io.objectstore import ObjectPath, StagedOutput, staging_folder

    staged = StagedOutput(ObjectPath.parse(where), staging_folder(where), (*(str(s) for s in STAGES.computing), REPORT_RECORD))
    staged.pull()
    return staged


def _data_example(out: Path) -> CommandReport:
    from trainpipe.cli.display import console
    from trainpipe.contract.reports import DataReport
    from trainpipe.data.example import build_example

    summary = build_example(out)
    console.print(f"[green]example dataset[/] → {out}: {len(summary.symbols)} symbols, "
                  f"{sum(summary.rows_per_symbol.values())} rows, {len(summary.features)} features, targets {', '.join(summary.targets)}")
    return DataReport(symbols=len(summary.symbols))


def _report(args: argparse.Namespace) -> CommandReport:
    from trainpipe.cli.options import resolve
    from trainpipe.io.layout import Layout
    from trainpipe.report.html import write_report
    from trainpipe.runner.reports import html_report

    spec, name = resolve(args)  # an invalid spec (or tracking flag) fails here as it would in every other stage
    staged = staged_output(args.output_dir)
    layout = Layout(staged.local if staged is not None else args.output_dir)
    _claim_pipeline_folder(args, layout)
    if args.run_id is not None and layout.master_training_plan.exists():
        from trainpipe.io.plan_files import read_training_plan
        from trainpipe.runner.plan_identity import check_plan

        check_plan(read_training_plan(layout.master_training_plan), layout.master_training_plan, args.run_id, None)
    path = write_report(layout)
    print(path)
    removed_runs = None
    if args.keep_runs is not None:
        from trainpipe.cli.options import OptionsError
        from trainpipe.runner.retention import mark_succeeded, prune_runs

        if args.reuse_dir is None or args.keep_runs < 1:
            raise OptionsError("--keep-runs needs --reuse-dir (the folder of this pipeline's run folders) and a value of at least 1")
        from trainpipe.runner.ownership import claim_folder, legacy_runs

        if args.owner is not None:
            claim_folder(Path(args.reuse_dir), args.owner)  # never prune another pipeline's runs
        mark_succeeded(layout.root)
        pinned = set(args.pin) | legacy_runs(Path(args.reuse_dir))
        removed_runs = [p.name for p in prune_runs(Path(args.reuse_dir), args.keep_runs, Path(args.output_dir).resolve(), pinned)]
    # The operator starts the report Job only after every training stage succeeded: its run is a successful one.
    tracked = _track(args, spec, name, layout, succeeded=True)
    if staged is not None:
        staged.push(REPORT_RECORD)
    return html_report(layout, removed_runs, tracked)


def _stages(args: argparse.Namespace, where: list[str]) -> CommandReport:
    from trainpipe.cli.display import console, stage_progress, summary_table
    from trainpipe.cli.options import OptionsError, output_dir, resolve
    from trainpipe.io.layout import Layout
    from trainpipe.runner.steps import RunContext, requested_families

    spec, name = resolve(args)
    requested_families(spec.training)  # an unknown family fails before any work
    if args.command == "train" and args.unit_index is not None and args.family is None:
        raise OptionsError("--unit-index needs --family: a training unit is addressed by family and index")
    staged = staged_output(output_dir(args, name))
    layout = Layout(staged.local if staged is not None else Path(output_dir(args, name)))
    _claim_pipeline_folder(args, layout)
    with stage_progress() as tick:
        ctx = RunContext(spec=spec, layout=layout, progress=tick, run_id=args.run_id, reuse_dir=args.reuse_dir,
                         expected_plan_digest=getattr(args, "plan_digest", None), training_plan_dir=getattr(args, "training_plan_dir", None),
                         previous_run=getattr(args, "previous_run", None))
        if args.threads:
            ctx.threads = args.threads
        ctx.rank_aggregate_only = bool(getattr(args, "aggregate", False))
        groups = getattr(args, "groups", None)
        if groups is not None:
            stages = ctx.spec.stages
            ctx.spec = ctx.spec.model_copy(update={"stages": stages.model_copy(update={"rank": stages.rank.model_copy(update={"target_groups": groups})})})
        if args.command == "select" and (args.target is not None or args.unit_index is not None):
            unit_report = _select_unit(ctx, args, where)
        elif args.command == "rank" and args.unit_index is not None:
            unit_report = _rank_unit(ctx, args, where)
        elif args.command == "train" and args.family is not None:
            unit_report = _train_family_or_unit(ctx, args)
        else:
            unit_report = None
        if unit_report is not None:
            if staged is not None:  # one unit in its own pod: published as a unit record beside its siblings'
                staged.push_unit(_stage_list(args)[0], _unit_label(args))
            return unit_report
        outcomes, failure = _run_stages(ctx, _stage_list(args), args.force, staged)
    console.print(summary_table(outcomes, str(staged.remote) if staged is not None else str(layout.root)))
    no_evidence = _no_evidence(outcomes)
    report_path = None
    # A run that ends for want of evidence has its report written by rank: on a cluster no later stage runs.
    if args.command == "run" or no_evidence is not None:
        from trainpipe.report.html import write_report

        report_path = write_report(layout)
        console.print(f"report: [bold]{report_path}[/]")
        if args.command == "run":
            print(report_path)
    tracked = None
    if args.command == "run" and spec.tracking is not None and not args.skip_training:
        # Before a failure is raised: a failed run is tracked as failed (and registers nothing), then fails as it would.
        tracked = _track(args, spec, name, layout, succeeded=failure is None and no_evidence is None and not args.skip_training)
    if failure is not None:
        raise failure
    if no_evidence is not None:
        from trainpipe.runner.retention import mark_no_evidence

        mark_no_evidence(layout.root, no_evidence)
        console.print(f"[yellow]NoEvidence[/]: {no_evidence}")
    elif args.command == "run" and not args.skip_training:
        from trainpipe.runner.retention import mark_succeeded

        mark_succeeded(layout.root)  # a run that trained nothing is not one later runs compare with or keep
    if staged is not None and report_path is not None:
        staged.push(REPORT_RECORD)
        console.print(f"published to [bold]{staged.remote}[/] (completion records under {staged.remote}/_complete/)")
    return _stage_report(args, layout, outcomes, report_path, no_evidence, tracked)


def _track(args: argparse.Namespace, spec, name: str, layout, *, succeeded: bool):
    """Log the run to MLflow when the spec asks for it; the outcome, printed (a run not tracked says why), or None."""
    if spec.tracking is None:
        return None
    from trainpipe.cli.display import console
    from trainpipe.runner.steps.track import run_identity, track_step

    owner = getattr(args, "owner", None)
    identity = run_identity(layout, owner.name if owner is not None else name, owner.namespace if owner is not None else None, args.run_id)
    outcome = track_step(layout, spec.tracking, identity, succeeded)
    style = "green" if outcome.state == "tracked" else "yellow"
    console.print(f"[{style}]{outcome.state}[/]: {outcome.line()}", highlight=False)
    return outcome


def _unit_label(args: argparse.Namespace) -> str:
    """The unit a select/train call computes, as its record's file name: target or index, family and index."""
    index = "all" if args.unit_index is None else str(args.unit_index)
    if args.command in ("select", "rank"):
        return f"target-{args.target}" if getattr(args, "target", None) is not None else f"index-{index}"
    return f"{args.family}-{index}"


def _claim_pipeline_folder(args: argparse.Namespace, layout) -> None:
    """With --owner (cluster runs): the run folder's pipeline folder is this pipeline's, or nothing is written (exit 9)."""
    if getattr(args, "owner", None) is None:
        return
    from trainpipe.runner.ownership import claim_folder

    claim_folder(layout.root.parent, args.owner)


def _stage_list(args: argparse.Namespace) -> list[str]:
    if args.command == "run":
        return [s for s in STAGES.computing if not (args.skip_training and s in STAGES.training)]
    if args.command == "train":
        return [STAGES[args.stage].stage]
    return [_stage_of(args.command)]


def _no_evidence(outcomes) -> str | None:
    """Rank's words when it found no target with evidence of skill (the run ends there), else None."""
    from trainpipe.contract.summaries import RankStageSummary

    return next((o.summary.no_evidence for o in outcomes if isinstance(o.summary, RankStageSummary)), None)


def _run_stages(ctx, stages: list[str], force: bool, staged=None):
    """Run `stages` in order; stop at the first whose units failed and return it (the others' results stand), or after
    a rank that found no evidence of skill (nothing to select or train). With `staged` (an object-store output),
    each finished stage is published before the next starts, so a run stopped later resumes from it."""
    from trainpipe.cli.display import console
    from trainpipe.runner.steps import StageFailedError, StageOutcome, run_stage

    outcomes: list[StageOutcome] = []
    for stage in stages:
        try:
            outcome = run_stage(ctx, stage, force=force)
        except StageFailedError as exc:
            return outcomes, exc
        if outcome.reused_from is not None:
            console.print(f"[cyan]{stage}[/]: same inputs as {outcome.reused_from} — copied its outputs")
        elif outcome.outcome is Outcome.CACHED:
            console.print(f"[cyan]{stage}[/]: inputs unchanged since the last run — reusing its outputs")
        outcomes.append(outcome)
        if staged is not None:
            staged.push(str(stage))
        if _no_evidence([outcome]) is not None:
            break
    return outcomes, None


def _stage_report(args: argparse.Namespace, layout, outcomes, report_path, no_evidence: str | None, tracked=None) -> CommandReport:
    from trainpipe.contract.reports import RunReport
    from trainpipe.runner.reports import plan_report, rank_report, stage_report

    if args.command == "rank":
        return rank_report(layout, outcomes[0].outcome)
    if args.command == "plan":
        return plan_report(layout, outcomes[0].outcome)
    if args.command == "run":
        return RunReport(stages={str(o.stage): o.outcome for o in outcomes},
                         report=layout.relative(report_path) if report_path is not None else None, no_evidence=no_evidence,
                         tracking=None if tracked is None else tracked.summary())
    return stage_report(outcomes[0])


def _rank_unit(ctx, args: argparse.Namespace, where: list[str]) -> CommandReport:
    from trainpipe.cli.display import console
    from trainpipe.contract.outcomes import Outcome
    from trainpipe.contract.reports import RankUnitReport
    from trainpipe.runner.steps.rank import rank_unit

    units = ctx.spec.stages.rank.target_groups
    where[0] = f"rank unit {args.unit_index} of {units}"
    targets = rank_unit(ctx, args.unit_index, units)
    console.print(f"[cyan]rank[/] unit {args.unit_index} of {units}: scored {', '.join(targets) or 'no target'}")
    return RankUnitReport(unit_index=args.unit_index, units=units, targets=targets, status=Outcome.RAN)


def _select_unit(ctx, args: argparse.Namespace, where: list[str]) -> CommandReport:
    from trainpipe.cli.display import console
    from trainpipe.io.stage_files import read_rankings
    from trainpipe.runner.units import select_address, select_unit

    target, index = select_address(read_rankings(ctx.layout).selected, args.target, args.unit_index)
    where[0] = f"select unit {index} (target {target})"
    outcome = select_unit(ctx, target, force=args.force)
    console.print(f"[cyan]select[/] unit {index} ({target}): {_said(outcome.outcome)}")
    return outcome.report


def _train_family_or_unit(ctx, args: argparse.Namespace) -> CommandReport:
    from trainpipe.cli.display import console
    from trainpipe.contract.reports import TrainUnitReport
    from trainpipe.runner.reports import stage_report
    from trainpipe.runner.units import train_family, train_unit

    stage = Stage(args.stage)
    if args.unit_index is None:
        from trainpipe.cli.display import summary_table

        outcome = train_family(ctx, stage, args.family)
        console.print(summary_table([outcome], str(ctx.layout.root)))
        return stage_report(outcome, family=args.family)
    unit = train_unit(ctx, stage, args.family, args.unit_index, force=args.force)
    family = unit.report.family if isinstance(unit.report, TrainUnitReport) else args.family
    console.print(f"[cyan]{stage.value}[/] unit {family}[{unit.index}] ({unit.unit}): {_said(unit.outcome)}")
    return unit.report


def _said(outcome: Outcome) -> str:
    return {Outcome.RAN: "done", Outcome.CACHED: "already done with the same inputs",
            Outcome.REUSED: "copied from another run with the same inputs"}[outcome]


if __name__ == "__main__":
    raise SystemExit(main())
