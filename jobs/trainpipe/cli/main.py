"""`trainpipe` command line: one subcommand per stage (what each Kubernetes Job runs) and `run` chaining them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainpipe import __version__
from trainpipe.contract.names import COMPUTE_STAGES, Stage

EPILOG = """\
examples:
  trainpipe data example --out data/example
  trainpipe run --data-dir data/example --auto-targets --auto-features --output-dir out/demo
  trainpipe run -f pipeline.yaml                      # the spec of a TrainingPipeline manifest
  trainpipe rank --data-dir data/example --output-dir out/demo   # one stage, as a Job runs it
  trainpipe train --stage cpu --data-dir data/example --output-dir out/demo
"""


def build_parser() -> argparse.ArgumentParser:
    from trainpipe.cli.options import add_pipeline_options

    parser = argparse.ArgumentParser(
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
        "select": "Select features per kept target by a consensus of importance methods.",
        "plan": "Route targets (cross-sectional / symbol-specific) and write the training plan.",
        "train": "Train the plan's models of one stage (cpu or gpu) on a purged time-ordered holdout.",
    }
    for name, text in stage_help.items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_pipeline_options(p)
        if name == "train":
            p.add_argument("--stage", choices=["cpu", "gpu"], required=True, help="cpu: tree/linear/probabilistic families; gpu: TensorFlow and PyTorch families (run on CPU when no GPU is present).")
        if name == "run":
            p.add_argument("--skip-training", action="store_true", help="Stop after the plan (rank, select, plan only).")

    report = sub.add_parser("report", help="Rebuild report.html from an output folder.")
    report.add_argument("--output-dir", type=Path, required=True, metavar="DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted; finished stages are kept and a rerun resumes after them", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 — every known failure becomes one clear line, not a traceback
        if not _is_user_error(exc):
            raise
        from trainpipe.cli.display import console

        console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        return 2


def _is_user_error(exc: Exception) -> bool:
    from trainpipe.cli.options import OptionsError
    from trainpipe.contract.pipeline import ManifestError
    from trainpipe.data.errors import DataError
    from trainpipe.runner.steps import StageInputError

    user_errors: tuple[type[Exception], ...] = (OptionsError, ManifestError, DataError, StageInputError)
    from trainpipe.io.plan_files import PlanFileError
    from trainpipe.stages.planning import EmptyPlanError
    from trainpipe.training.stage import StageGateError

    user_errors += (EmptyPlanError, PlanFileError, StageGateError)
    try:
        from trainpipe.families.catalogue import UnknownFamilyError

        user_errors += (UnknownFamilyError,)
    except ImportError:
        pass
    return isinstance(exc, user_errors)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "data":
        return _data_example(args.out)
    if args.command == "report":
        from trainpipe.io.layout import Layout
        from trainpipe.report.html import write_report

        path = write_report(Layout(args.output_dir))
        print(path)
        return 0
    return _stages(args)


def _data_example(out: Path) -> int:
    from trainpipe.cli.display import console
    from trainpipe.data.example import build_example

    summary = build_example(out)
    console.print(f"[green]example dataset[/] → {out}: {len(summary.symbols)} symbols, "
                  f"{sum(summary.rows_per_symbol.values())} rows, {len(summary.features)} features, targets {', '.join(summary.targets)}")
    return 0


def _stages(args: argparse.Namespace) -> int:
    from trainpipe.cli.display import console, stage_progress, summary_table
    from trainpipe.cli.options import output_dir, resolve
    from trainpipe.io.layout import Layout
    from trainpipe.runner.steps import RunContext, run_stage

    spec, name = resolve(args)
    from trainpipe.runner.steps import requested_families

    requested_families(spec.training)  # an unknown family fails before any work
    layout = Layout(output_dir(args, name))
    stages: list[Stage]
    if args.command == "run":
        stages = list(COMPUTE_STAGES[:3] if args.skip_training else COMPUTE_STAGES)
    elif args.command == "train":
        stages = [Stage.CPU if args.stage == "cpu" else Stage.GPU]
    else:
        stages = [Stage(args.command)]
    from trainpipe.runner.steps import StageFailedError

    outcomes = []
    failure: StageFailedError | None = None
    with stage_progress() as tick:
        ctx = RunContext(spec=spec, layout=layout, progress=tick)
        if args.threads:
            ctx.threads = args.threads
        for stage in stages:
            try:
                outcome = run_stage(ctx, stage, force=args.force)
            except StageFailedError as exc:
                failure = exc
                break
            if outcome.cached:
                console.print(f"[cyan]{stage.value}[/]: inputs unchanged since the last run — reusing its outputs")
            outcomes.append(outcome)
    console.print(summary_table(outcomes, str(layout.root)))
    if args.command == "run":
        from trainpipe.report.html import write_report

        report = write_report(layout)
        console.print(f"report: [bold]{report}[/]")
        print(report)
    if failure is not None:
        console.print(f"[bold red]error:[/] {failure}\nrerun the same command to retry only the failed units", highlight=False)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
