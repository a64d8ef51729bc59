"""Pipeline flags shared by `trainpipe run|rank|select|plan|train`, and how they overlay a manifest's spec."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trainpipe.contract.pipeline import PipelineSpec, format_validation_error, load_manifest


class OptionsError(ValueError):
    """Flags that do not make a valid pipeline spec; the message names the flag or field."""


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("pipeline (each flag overrides the same field of -f's spec)")
    g.add_argument("-f", "--file", type=Path, metavar="PIPELINE.yaml",
                   help="A TrainingPipeline manifest (the same file the operator takes); its spec is the starting point.")
    g.add_argument("--data-dir", metavar="DIR", help="Data: <DIR>/[interval=<I>/]symbol=<SYM>/<SYM>.parquet, or one long parquet/CSV file with a symbol column. [spec.data.dir]")
    g.add_argument("--symbols", nargs="+", metavar="SYM", help="Symbols to load (default: all found). [spec.data.symbols]")
    g.add_argument("--interval", metavar="I", help="Interval partition to read, e.g. 5m or 1d. [spec.data.interval]")
    g.add_argument("--max-rows-per-symbol", type=int, metavar="N", help="Keep the most recent N rows per symbol. [spec.data.maxRowsPerSymbol]")
    g.add_argument("--output-dir", type=Path, metavar="DIR", help="Where artefacts go (default: out/<pipeline name>). Reusing a dir reuses finished stages.")
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
    g.add_argument("--allow-empty-plan", action="store_true", default=None, help="A plan with zero jobs is not an error. [spec.training.allowEmptyPlan]")
    g.add_argument("--seed", type=int, help="Seed for every sampler and model (default 42). [spec.seed]")
    r = parser.add_argument_group("execution")
    r.add_argument("--force", "--force-refresh", dest="force", action="store_true",
                   help="Rerun the stage(s) even when their cached outputs match the inputs.")
    r.add_argument("--threads", type=int, metavar="N", help="Threads for model fitting in rank/select (default: cores, at most 4).")


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
    "seed": "seed",
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
        section, _, key = path.partition(".")
        if key:
            spec.setdefault(section, {})[key] = value
        else:
            spec[section] = value
    # Naming targets or features without --auto-* means "use exactly these", as in the seed's CLI.
    if explicit_targets:
        spec.setdefault("targets", {})["auto"] = False
    if explicit_features:
        spec.setdefault("features", {})["auto"] = False
    return spec


def resolve(args: argparse.Namespace) -> tuple[PipelineSpec, str]:
    """(spec, pipeline name) from -f and the flags; errors name the file, flag or field."""
    name = "pipeline"
    base: dict[str, Any] = {}
    if args.file is not None:
        manifest = load_manifest(args.file)
        name = manifest.metadata.name
        base = manifest.spec.to_wire()
    try:
        return PipelineSpec.model_validate(overlay(base, args)), name
    except ValidationError as exc:
        raise OptionsError(f"invalid pipeline settings: {format_validation_error(exc)}") from None


def output_dir(args: argparse.Namespace, name: str) -> Path:
    return args.output_dir if args.output_dir is not None else Path("out") / name
