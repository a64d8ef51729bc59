"""The select benchmark's own logic: variants named by checkout, each variant's selections read back and compared."""

from __future__ import annotations

import argparse
import json
import os

import pytest
from trainpipe_bench.select_speed import Variant, jaccard, parse_variant, selections


def test_a_variant_is_a_name_and_a_checkout_whose_packages_go_first_on_the_path(tmp_path):
    (tmp_path / "jobs" / "trainpipe").mkdir(parents=True)
    v = parse_variant(f"base={tmp_path}")
    assert v == Variant("base", tmp_path.resolve())
    assert v.env()["PYTHONPATH"].split(os.pathsep) == [str(tmp_path.resolve() / f) for f in ("jobs", "operator", "bench", "localcluster")]
    assert Variant("this", None).env() is None  # this process's own path


@pytest.mark.parametrize("text", ["base", "=/tmp", "base=", "base=/nonexistent-checkout"])
def test_a_variant_without_a_name_or_a_checkout_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--variant"):
        parse_variant(text)


@pytest.mark.parametrize(
    "a,b,overlap",
    [(["x", "y"], ["y", "x"], 1.0), (["x", "y"], ["y", "z"], 1 / 3), ([], [], 1.0), (["x"], [], 0.0)],
)
def test_jaccard(a, b, overlap):
    assert jaccard(a, b) == pytest.approx(overlap)


def test_selections_are_read_per_target_best_first(tmp_path):
    for target, features in {"t1": ["b", "a"], "t2": []}.items():
        (tmp_path / "selection" / target).mkdir(parents=True)
        (tmp_path / "selection" / target / "selected_features.json").write_text(json.dumps({"target": target, "features": features}))
    assert selections(tmp_path) == {"t1": ["b", "a"], "t2": []}
    assert selections(tmp_path / "missing") == {}
