"""Pipeline flags shared by `trainpipe run|rank|select|plan|train`, how they overlay a manifest's spec, and the cluster-run flags."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.owners import FolderOwner
from trainpipe.contract.pipeline import PipelineSpec, TrainingSpec, format_validation_error, load_manifest
from trainpipe.contract.storage import is_object_uri


class OptionsError(ValueError, CommandFailure):
    """Flags that do not make a valid pipeline spec; the message names the flag or field."""

    exit_code = ExitCode.INVALID_SPEC


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("pipeline (each flag overrides the same field of -f's spec)")
    add_spec_source(g)
    g.add_argument("--data-dir", metavar="DIR", help="Data: <DIR>/[interval=<I>/]symbol=<SYM>/<SYM>.parquet, or one long parquet/CSV file with a symbol column; or s3://bucket/prefix (credentials from AWS_* variables). [spec.data.dir / spec.data.uri]")
    g.add_argument("--symbols", nargs="+", metavar="SYM", help="Symbols to load (default: all found). [spec.data.symbols]")
    g.add_argument("--interval", metavar="I", help="Interval partition to read, e.g. 5m or 1d. [spec.data.interval]")
    g.add_argument("--max-rows-per-symbol", type=int, metavar="N", help="Keep the most recent N rows per symbol. [spec.data.maxRowsPerSymbol]")
    g.add_argument("--output-dir", type=output_location, metavar="DIR",
                   help="Where artefacts go (default: out/<pipeline name>), or s3://bucket/prefix (worked on in a local staging folder, published "
                        "stage by stage with completion records). Reusing a dir reuses finished stages.")
    g.add_argument("--auto-targets", action="store_true", default=None, help="Discover and rank every fwd_ret_*/y_* target (the default). [spec.targets.auto]")
    g.add_argument("--targets", nargs="+", metavar="T", help="Only these targets (with --auto-targets they are ranked; otherwise used as given). [spec.targets.include]")
    g.add_argument("--top-n-targets", type=int, metavar="N", help="Ranked targets kept for selection and training (default 5). [spec.targets.topN]")
    g.add_argument("--auto-features", action="store_true", default=None, help="Select features by multi-method consensus (the default). [spec.features.auto]")
    g.add_argument("--features", nargs="+", metavar="F", help="Candidate features (without --auto-features: exactly these). [spec.features.include]")
    g.add_argument("--exclude-features", nargs="+", metavar="F", help="Features never used. [spec.features.exclude]")
    g.add_argument("--top-m-features", type=int, metavar="M", help="Features kept per target (default 50). [spec.features.topM]")
    g.add_argument("--folds", type=int, metavar="K", help="Walk-forward folds for ranking (default 4). [spec.ranking.folds]")
    g.add_argument("--embargo-bars", type=int, metavar="B", help="Bars purged beyond the target horizon (default 5). [spec.ranking.embargoBars]")
    g.add_argument("--families", nargs="+", metavar="FAMILY", help="Model families to train, e.g. lightgbm xgboost catboost (default). [spec.training.families]")
    g.add_argument("--model-types", choices=["all", "sequential", "cross_sectional", "cpu", "gpu"],
                   help="Seed-compatible selector: 'sequential' or 'all' = every family, CPU stage then GPU stage. [spec.training.modelTypes]")
    g.add_argument("--holdout-fraction", type=float, metavar="F", help="Most recent share of rows held out for model metrics (default 0.2). [spec.training.holdoutFraction]")
    g.add_argument("--cost-bps", type=float, metavar="BPS",
                   help=f"Trading cost the holdout backtests charge on turnover, in basis points of the value traded "
                        f"(default {TrainingSpec.model_fields['cost_bps'].default:g}). [spec.training.costBps]")
    g.add_argument("--allow-empty-plan", action="store_true", default=None, help="A plan with zero jobs is not an error. [spec.training.allowEmptyPlan]")
    g.add_argument("--full-budget-on-cpu", action="store_true", default=None,
                   help="GPU families keep their full training budget without a GPU (slow: minutes per model). [spec.training.fullBudgetOnCpu]")
    g.add_argument("--train-anyway", action="store_true", default=None,
                   help="Report the evidence gates without applying them: the best targets, features and routes by point estimate (the "
                        "report says so on its first line), never NoEvidence. [spec.evidence.trainAnyway]")
    g.add_argument("--evidence-alpha", type=float, metavar="A",
                   help="False-discovery rate of the target and routing evidence gates (default 0.05). [spec.evidence.alpha]")
    g.add_argument("--seed", type=int, help="Seed for every sampler and model (default 42). [spec.seed]")
    r = parser.add_argument_group("execution")
    r.add_argument("--force", "--force-refresh", dest="force", action="store_true",
                   help="Rerun the stage(s) even when their cached outputs match the inputs.")
    r.add_argument("--threads", type=int, metavar="N",
                   help="Threads for model fitting in rank/select (default: the CPUs this process may use — TRAINPIPE_CPUS in a pod — at most 4).")


def add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """--mlflow-uri and the other spec.tracking fields, for `trainpipe run` and `trainpipe report` (the run's last step on a cluster)."""
    g = parser.add_argument_group("tracking in MLflow (each flag overrides the same field of the spec's tracking)")
    g.add_argument("--mlflow-uri", metavar="URI",
                   help="Log the run, each trained model and the report to this MLflow tracking server (http://host:5000) and register "
                        "the best model per target; unreachable, the run still succeeds and says \"not tracked\". [spec.tracking.mlflowUri]")
    g.add_argument("--experiment", metavar="NAME", help="MLflow experiment (default trainpipe/<pipeline>). [spec.tracking.experiment]")
    g.add_argument("--register-models", action=argparse.BooleanOptionalAction, default=None,
                   help="Register the best model of each target on a successful run (default: yes). [spec.tracking.registerModels]")
    g.add_argument("--alias", metavar="ALIAS", help="Alias given to each newly registered best model (default champion). [spec.tracking.alias]")
    g.add_argument("--model-prefix", metavar="PREFIX", help="Registered models are named PREFIX-<target> (default: the pipeline name). "
                   "[spec.tracking.modelPrefix]")


def add_spec_source(group: argparse._ActionsContainer) -> None:
    group.add_argument("-f", "--file", type=Path, metavar="PIPELINE.yaml",
                       help="A TrainingPipeline manifest (the same file the operator takes); its spec is the starting point.")
    group.add_argument("--spec-json", metavar="JSON",
                       help="The pipeline spec as one JSON object, camelCase: the shape of a manifest's `spec` (instead of -f; the other flags still override it).")
    group.add_argument("--spec-file", type=Path, metavar="SPEC.json",
                       help="The same JSON object in a file (what the operator mounts into every pod: a spec of thousands of symbols "
                            "does not fit one command-line argument).")


# A run id names Jobs and a folder: a DNS label, as the operator's `r<10 hex>` ids are.
RUN_ID_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def run_id_arg(text: str) -> str:
    if not RUN_ID_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a run id: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit")
    return text


def unit_index_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a unit index (a whole number ≥ 0, e.g. $JOB_COMPLETION_INDEX)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"unit index {value} is negative; indexes start at 0")
    return value


def groups_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of target groups (a whole number ≥ 1)") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value} target groups: use 1 to 64 (stages.rank.targetGroups)")
    return value


def plan_digest_arg(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a plan digest (64 lowercase hex digits, as `trainpipe plan` reports it)")
    return text


def owner_arg(text: str) -> FolderOwner:
    try:
        return FolderOwner.from_arg(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_run_options(parser: argparse.ArgumentParser, *, reuse_help: str | None = None) -> None:
    """--run-id, --termination-log, --reuse-dir and --owner: what the operator passes to every stage Job (all optional locally)."""
    g = parser.add_argument_group("cluster runs (the operator passes these; all optional locally)")
    g.add_argument("--run-id", type=run_id_arg, metavar="RUN",
                   help="The run this call belongs to: `plan` records it as the plan's metadata.runId (instead of run-<key>); "
                        "`train` and `report` refuse a plan with another one (exit 6, STALE_PLAN).")
    g.add_argument("--termination-log", type=Path, metavar="PATH",
                   help="Write one line here at exit: compact JSON of what was done on success, the reason (stage, unit, exit code name) "
                        "on failure; at most 4096 bytes (a pod's termination message).")
    g.add_argument("--reuse-dir", type=Path, metavar="DIR",
                   help=reuse_help or ("Folder holding other run folders of this pipeline (<artifacts>/<pipeline>): a stage or unit that is not "
                                       "done here is copied from a run folder in DIR whose record has the same inputs, instead of computed."))
    g.add_argument("--owner", type=owner_arg, metavar="NAMESPACE/PIPELINE/UID",
                   help="The pipeline the run folder's parent (its pipeline folder) belongs to: recorded there as .trainpipe/owner.json "
                        "by the first stage; a folder whose record names another pipeline is refused (exit 9, FOLDER_OWNED).")


def add_previous_run_option(parser: argparse.ArgumentParser) -> None:
    """--previous-run for `select` and `run`: the operator passes the pipeline's last succeeded run folder."""
    parser.add_argument("--previous-run", type=Path, metavar="DIR",
                        help="A run folder of this pipeline (the operator passes the last succeeded one): each target's selection is compared "
                             "with that run's to grade its stability. Default: this output folder's own earlier selection. A folder without "
                             "a readable selection of a target means no comparison for it, never an error.")


# flag dest -> dotted spec path
_FLAG_FIELDS: dict[str, str] = {
    "data_dir": "data.dir",
    "symbols": "data.symbols",
    "interval": "data.interval",
    "max_rows_per_symbol": "data.maxRowsPerSymbol",
    "auto_targets": "targets.auto",
    "targets": "targets.include",
    "top_n_targets": "targets.topN",
    "auto_features": "features.auto",
    "features": "features.include",
    "exclude_features": "features.exclude",
    "top_m_features": "features.topM",
    "folds": "ranking.folds",
    "embargo_bars": "ranking.embargoBars",
    "families": "training.families",
    "model_types": "training.modelTypes",
    "holdout_fraction": "training.holdoutFraction",
    "allow_empty_plan": "training.allowEmptyPlan",
    "cost_bps": "training.costBps",
    "full_budget_on_cpu": "training.fullBudgetOnCpu",
    "train_anyway": "evidence.trainAnyway",
    "evidence_alpha": "evidence.alpha",
    "seed": "seed",
    "mlflow_uri": "tracking.mlflowUri",
    "experiment": "tracking.experiment",
    "register_models": "tracking.registerModels",
    "alias": "tracking.alias",
    "model_prefix": "tracking.modelPrefix",
}


def overlay(base: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The spec dict with every flag the user gave written over the field it names (pure)."""
    spec = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    explicit_targets = getattr(args, "targets", None) and not getattr(args, "auto_targets", None)
    explicit_features = getattr(args, "features", None) and not getattr(args, "auto_features", None)
    for dest, path in _FLAG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "data_dir" and is_object_uri(value):
            path = "data.uri"  # --data-dir s3://bucket/prefix: the same flag for a folder and a store
        section, _, key = path.partition(".")
        if key:
            if not isinstance(spec.get(section), dict):  # an optional section the spec leaves out (tracking)
                spec[section] = {}
            spec[section][key] = value
        else:
            spec[section] = value
    # Naming targets or features without --auto-* means "use exactly these", as in the seed's CLI.
    if explicit_targets:
        spec.setdefault("targets", {})["auto"] = False
    if explicit_features:
        spec.setdefault("features", {})["auto"] = False
    return spec


def spec_from_json(text: str, source: str = "--spec-json") -> PipelineSpec:
    """The spec given as `--spec-json` (or read from `source`, a file); errors name the flag or file and the field."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OptionsError(f"{source} is not valid JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(raw, dict):
        raise OptionsError(f"{source} must be one JSON object (a TrainingPipeline's spec), not a {type(raw).__name__}")
    try:
        return PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise OptionsError(f"{source}: {format_validation_error(exc)}") from None


def spec_from_file(path: Path) -> PipelineSpec:
    try:
        text = path.read_text()
    except OSError as exc:
        raise OptionsError(f"--spec-file {path}: cannot read it ({exc.strerror}); the operator mounts it from the run's spec ConfigMap") from None
    return spec_from_json(text, f"--spec-file {path}")


def resolve(args: argparse.Namespace) -> tuple[PipelineSpec, str]:
    """(spec, pipeline name) from -f, --spec-json or --spec-file and the flags; errors name the file, flag or field."""
    name = "pipeline"
    base: dict[str, Any] = {}
    spec_json, spec_file = getattr(args, "spec_json", None), getattr(args, "spec_file", None)
    given = [flag for flag, value in (("-f", args.file), ("--spec-json", spec_json), ("--spec-file", spec_file)) if value is not None]
    if len(given) > 1:
        raise OptionsError(f"give the spec with {' or with '.join(given)}, not both" if len(given) == 2 else "give the spec one way: -f, --spec-json or --spec-file")
    if args.file is not None:
        manifest = load_manifest(args.file)
        name = manifest.metadata.name
        base = manifest.spec.to_wire()
    elif spec_json is not None:
        base = spec_from_json(spec_json).to_wire()
    elif spec_file is not None:
        base = spec_from_file(spec_file).to_wire()
    try:
        return PipelineSpec.model_validate(overlay(base, args)), name
    except ValidationError as exc:
        raise OptionsError(f"invalid pipeline settings: {format_validation_error(exc)}") from None


def output_location(text: str) -> Path | str:
    """--output-dir's type: a folder as a Path, an object-store URI kept as text (a Path would fold its '//')."""
    return text if is_object_uri(text) else Path(text)


def output_dir(args: argparse.Namespace, name: str) -> Path | str:
    return args.output_dir if args.output_dir is not None else Path("out") / name
