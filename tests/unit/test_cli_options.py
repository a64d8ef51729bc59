"""CLI flags overlay a manifest's spec field by field; bad values name the flag's field."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainpipe.cli.main import build_parser
from trainpipe.cli.options import OptionsError, output_dir, resolve
from trainpipe.contract.pipeline import ManifestError

MANIFEST = """\
apiVersion: trainpipe.io/v1alpha1
kind: TrainingPipeline
metadata: {name: nightly}
spec:
  data: {dir: /data/bars, symbols: [AAPL, MSFT]}
  targets: {topN: 3}
  training: {families: [lightgbm]}
"""


def _args(*argv: str):
    return build_parser().parse_args(["run", *argv])


def test_seed_documented_command_parses():
    spec, name = resolve(_args("--data-dir", "data", "--symbols", "AAPL", "MSFT", "GOOGL", "--auto-targets", "--auto-features"))
    assert spec.data.dir == "data" and spec.data.symbols == ["AAPL", "MSFT", "GOOGL"]
    assert spec.targets.auto and spec.features.auto and name == "pipeline"


def test_flags_override_manifest_fields(tmp_path: Path):
    f = tmp_path / "p.yaml"
    f.write_text(MANIFEST)
    spec, name = resolve(_args("-f", str(f), "--top-n-targets", "2", "--families", "xgboost", "catboost"))
    assert name == "nightly" and spec.data.dir == "/data/bars" and spec.data.symbols == ["AAPL", "MSFT"]
    assert spec.targets.top_n == 2 and spec.training.families == ["xgboost", "catboost"]
    assert output_dir(_args("-f", str(f)), name) == Path("out/nightly")


def test_explicit_targets_without_auto_means_exactly_these():
    spec, _ = resolve(_args("--targets", "fwd_ret_5d"))
    assert spec.targets.auto is False and spec.targets.include == ["fwd_ret_5d"]
    spec, _ = resolve(_args("--targets", "fwd_ret_5d", "--auto-targets"))
    assert spec.targets.auto is True


def test_bad_value_names_the_field():
    with pytest.raises(OptionsError, match="targets.topN"):
        resolve(_args("--top-n-targets", "0"))


def test_bad_manifest_names_file_and_field(tmp_path: Path):
    f = tmp_path / "bad.yaml"
    f.write_text(MANIFEST.replace("{topN: 3}", "{topN: 3, colour: red}"))
    with pytest.raises(ManifestError, match=r"bad.yaml.*spec.targets.colour"):
        resolve(_args("-f", str(f)))
    with pytest.raises(ManifestError, match="no such file"):
        resolve(_args("-f", str(tmp_path / "missing.yaml")))


@pytest.mark.parametrize(
    "argv,expected",
    [
        ((), ["lightgbm", "xgboost", "catboost"]),
        (("--families", "CatBoost", "lightgbm"), ["lightgbm", "catboost"]),
        (("--model-types", "sequential"), None),  # all 21, CPU stage first
        (("--model-types", "gpu", "--families", "lstm", "lightgbm", "mlp"), ["mlp", "lstm"]),
    ],
)
def test_family_selection_is_seed_compatible(argv, expected):
    from trainpipe.families.catalogue import ALL_FAMILIES, stage_of
    from trainpipe.runner.steps import requested_families

    spec, _ = resolve(_args(*argv))
    families = requested_families(spec.training)
    assert families == (expected if expected is not None else list(ALL_FAMILIES))
    stages = [stage_of(f) for f in families]
    assert stages == sorted(stages, key=["cpu", "gpu"].index)


@pytest.mark.parametrize(
    "argv,expected",
    [
        ((), None),  # no family selection: every family of the plan
        (("--families", "LightGBM"), ["lightgbm"]),
        (("--model-types", "gpu", "--families", "lstm", "lightgbm"), ["lstm"]),
    ],
)
def test_train_filters_the_plan_by_the_spec_families(argv, expected):
    from trainpipe.runner.steps import train_families

    spec, _ = resolve(build_parser().parse_args(["train", "--stage", "cpu", *argv]))
    assert train_families(spec.training) == expected


def test_spec_json_and_a_manifest_are_alternatives(tmp_path: Path):
    f = tmp_path / "p.yaml"
    f.write_text(MANIFEST)
    spec, name = resolve(_args("--spec-json", '{"data": {"dir": "/data/bars"}, "training": {"families": ["lightgbm"]}}', "--families", "xgboost"))
    assert (spec.data.dir, spec.training.families, name) == ("/data/bars", ["xgboost"], "pipeline")
    with pytest.raises(OptionsError, match="not both"):
        resolve(_args("-f", str(f), "--spec-json", "{}"))


def test_full_budget_on_cpu_flag_reaches_every_gpu_familys_parameters():
    from trainpipe.families.base import check_params
    from trainpipe.families.budget import full_budget_params
    from trainpipe.families.catalogue import GPU_FAMILIES

    spec, _ = resolve(_args("--data-dir", "data", "--full-budget-on-cpu"))
    assert spec.training.full_budget_on_cpu and not resolve(_args("--data-dir", "data"))[0].training.full_budget_on_cpu
    overrides = full_budget_params()
    assert set(overrides) == set(GPU_FAMILIES)
    assert all(check_params(name, overrides[name])["full_budget_on_cpu"] is True for name in GPU_FAMILIES)
