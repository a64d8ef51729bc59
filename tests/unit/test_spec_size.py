"""A spec too large to run is refused by the API server, naming the field: every string, list and map of
the CRD is bounded (contract.sizes), and a spec at every bound at once still fits an object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainpipe.contract import sizes
from trainpipe.contract.pipeline import PipelineSpec

CRD = Path(__file__).parents[2] / "crds" / "trainpipe.io_trainingpipelines.yaml"
# Passed to the pods as written (a core/v1 Affinity); its size is bounded only by the object's.
FREE_FORM = {"affinity"}


def _unbounded(node: dict[str, Any], where: str) -> list[str]:
    found: list[str] = []
    kind = node.get("type")
    if node.get("x-kubernetes-int-or-string") or kind == "string":
        if "maxLength" not in node and "enum" not in node:
            found.append(f"{where}: a string without maxLength")
        return found
    if kind == "array":
        if "maxItems" not in node:
            found.append(f"{where}: a list without maxItems")
        return found + _unbounded(node.get("items") or {}, f"{where}[]")
    if kind == "object":
        if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
            return [] if where.rsplit(".", 1)[-1] in FREE_FORM else [f"{where}: a free-form object"]
        for name, child in (node.get("properties") or {}).items():
            found += _unbounded(child, f"{where}.{name}")
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            if "maxProperties" not in node:
                found.append(f"{where}: a map without maxProperties")
            found += _unbounded(values, f"{where}{{}}")
    for sub in node.get("anyOf") or []:
        found += _unbounded(sub, where)
    return found


def _spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_every_string_list_and_map_of_the_spec_is_bounded():
    assert _unbounded(_spec_schema(), "spec") == []


def test_the_walk_finds_an_unbounded_field():
    schema = {"type": "object", "properties": {"names": {"type": "array", "items": {"type": "string"}},
                                               "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}}}}
    assert _unbounded(schema, "spec") == ["spec.names: a list without maxItems", "spec.names[]: a string without maxLength",
                                          "spec.labels: a map without maxProperties"]


def largest_spec() -> dict[str, Any]:
    """Every list and map at its bound, every string at its longest."""
    column = lambda prefix, i: f"{prefix}{i:0{sizes.COLUMN - len(prefix)}d}"  # noqa: E731
    symbols = [f"S{i:031d}" for i in range(sizes.SYMBOLS)]
    targets = [column("fwd_ret_", i) for i in range(sizes.TARGETS)]
    return {
        "data": {"dir": "/" + "d" * (sizes.PATH - 1), "symbols": symbols},
        "targets": {"include": targets, "horizonBars": {t: 5 for t in targets}},
        "features": {"include": [column("f_", i) for i in range(sizes.FEATURES)], "exclude": [column("x_", i) for i in range(sizes.FEATURES)]},
    }


def test_a_spec_at_every_bound_is_valid_and_fits_an_object_with_room_to_spare():
    spec = PipelineSpec.model_validate(largest_spec())
    size = len(json.dumps(spec.to_wire()).encode())
    assert size < 1024 * 1024, f"{size} bytes: etcd keeps about 1.5 MiB per object, with metadata and status beside the spec"


@pytest.mark.parametrize(("field", "value"), [
    ("features.include", [f"f{i}" for i in range(sizes.FEATURES + 1)]),
    ("data.symbols", [f"S{i}" for i in range(sizes.SYMBOLS + 1)]),
    ("features.exclude", ["x" * (sizes.COLUMN + 1)]),
])
def test_one_past_a_bound_is_refused_naming_the_field(field: str, value: Any):
    section, name = field.split(".")
    with pytest.raises(ValueError, match=name):
        PipelineSpec.model_validate({section: {name: value}})


def _largest_pipeline(data_dir: str) -> PipelineSpec:
    raw = largest_spec()
    raw["data"] = {**raw["data"], "dir": data_dir, "volume": {"claimName": "bars"}}
    raw["data"]["symbols"][:3] = ["AAA", "BBB", "CCC"]  # the panel has these three; 4,997 others are missing
    raw["images"] = {"cpu": "registry.example.com/trainpipe/jobs-cpu:1", "gpu": "registry.example.com/trainpipe/jobs-gpu:1"}
    return PipelineSpec.model_validate(raw)


def test_at_the_bounds_every_job_and_pod_stays_small_and_the_rank_pod_reads_its_spec_file(tmp_path: Path):
    import subprocess
    import sys

    from panels import make_panel, write_panel
    from trainpipe.contract.exitcodes import ExitCode
    from trainpipe.contract.stages import STAGES
    from trainpipe_operator.config import OperatorConfig
    from trainpipe_operator.manifests import SPEC_DIR, SPEC_KEY, JobIntent, Owner, job, spec_config_map

    data = tmp_path / "bars"
    write_panel(make_panel(n_days=300), data)
    spec = _largest_pipeline(str(data))
    owner = Owner("ml", "p" * 63, "uid")
    for stage, row in STAGES.items():
        intent = JobIntent(stage, "lightgbm" if row.trains else None, 0, 50 if row.indexed else 1, "d" * 64 if row.trains else None)
        manifest = job(spec, owner, "r0123456789", intent, OperatorConfig(), suspend=False)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": manifest["spec"]["template"]["metadata"], "spec": manifest["spec"]["template"]["spec"]}
        for what, obj in (("Job", manifest), ("pod", pod)):
            size = len(json.dumps(obj).encode())
            assert size < 16 * 1024, f"the {stage} {what} is {size} bytes"

    spec_map = spec_config_map(spec, owner, "r0123456789")
    assert len(json.dumps(spec_map).encode()) < 1024 * 1024, "a ConfigMap holds at most 1 MiB"
    mounted = tmp_path / SPEC_DIR.lstrip("/") / SPEC_KEY  # where the kubelet puts the ConfigMap's key
    mounted.parent.mkdir(parents=True)
    mounted.write_text(spec_map["data"][SPEC_KEY])
    [rank_args] = [job(spec, owner, "r0123456789", JobIntent("rank", None, 0, 1), OperatorConfig(), suspend=False)
                   ["spec"]["template"]["spec"]["containers"][0]["args"]]
    argv = [a.replace(SPEC_DIR, str(mounted.parent)).replace("/dev/termination-log", str(tmp_path / "log"))
            .replace(spec.artifacts.mount_path, str(tmp_path / "artifacts")) for a in rank_args]
    done = subprocess.run([sys.executable, "-m", "trainpipe.cli.main", *argv], capture_output=True, text=True, timeout=300)
    line = (tmp_path / "log").read_text().strip()
    assert done.returncode == ExitCode.BAD_DATA, line
    assert line.startswith("rank: BAD_DATA:") and "S0000000000000000000000000000003" in line, line
    # The Job's --owner: its pipeline folder (<mount>/<namespace>/<pipeline>) was recorded as this pipeline's before anything else.
    from trainpipe.runner.ownership import read_owner

    recorded = read_owner(tmp_path / "artifacts" / owner.namespace / owner.name)
    assert recorded is not None and (recorded.namespace, recorded.name, recorded.uid) == (owner.namespace, owner.name, owner.uid)
