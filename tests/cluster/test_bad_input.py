"""Bad specs against the real API server: each malformed field is refused (422) with its path in the message.

One API call per case, no pod: the whole corpus runs in seconds. The cases in test_operator.py
(topN 0, gpusPerPod -1, claimName with size, targets without names, pullPolicy, a cpu limit) and in
test_trainingpipeline_crd.py (features without names, modelTypes) are not repeated here. The last test
is the one that needs the operator: a valid spec whose data claim does not exist ends Stalled and no
Job is ever created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainpipe_localcluster import BATCH, ApiError, Kube, OperatorProcess, pipeline_manifest, pipelines_path, wait_condition


@pytest.fixture(scope="module", autouse=True)
def crd_installed(operator_kubeconfig: Path) -> None:
    """The CRD the chart ships, so this file also runs on its own."""


# (the spec change, what the message must contain: the field's path, and for CEL rules their message)
REJECTED: list[tuple[str, dict[str, Any], str]] = [
    # bounds
    ("topN-too-high", {"targets": {"topN": 201}}, "spec.targets.topN"),
    ("horizon-zero", {"targets": {"horizonBars": {"fwd_ret_x": 0}}}, "spec.targets.horizonBars.fwd_ret_x"),
    ("topM-zero", {"features": {"topM": 0}}, "spec.features.topM"),
    ("one-fold", {"ranking": {"folds": 1}}, "spec.ranking.folds"),
    ("leak-correlation-zero", {"ranking": {"leakCorrelation": 0}}, "spec.ranking.leakCorrelation"),
    ("max-auc-a-coin", {"ranking": {"maxAuc": 0.5}}, "spec.ranking.maxAuc"),
    ("min-support-six", {"selection": {"minSupport": 6}}, "spec.selection.minSupport"),
    ("route-fraction-zero", {"routing": {"maxFractionSymbolsPerTarget": 0}}, "spec.routing.maxFractionSymbolsPerTarget"),
    ("holdout-most-rows", {"training": {"holdoutFraction": 0.7}}, "spec.training.holdoutFraction"),
    ("seed-negative", {"seed": -1}, "spec.seed"),
    ("min-rows-ten", {"data": {"minRowsPerSymbol": 10}}, "spec.data.minRowsPerSymbol"),
    ("max-rows-fifty", {"data": {"maxRowsPerSymbol": 50}}, "spec.data.maxRowsPerSymbol"),
    ("parallelism-zero", {"stages": {"select": {"parallelism": 0}}}, "spec.stages.select.parallelism"),
    ("retries-per-index", {"stages": {"cpu": {"backoffLimitPerIndex": 101}}}, "spec.stages.cpu.backoffLimitPerIndex"),
    ("keep-no-runs", {"keepRuns": 0}, "spec.keepRuns"),
    ("deadline-zero", {"activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds"),
    ("ttl-negative", {"ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished"),
    ("queue-name-too-long", {"queueName": "q" * 64}, "spec.queueName"),
    ("cron-too-short", {"schedule": {"cron": "@daily"}}, "spec.schedule.cron"),
    # enums and lists
    ("too-few-methods", {"selection": {"methods": ["lightgbm_gain", "catboost"]}}, "spec.selection.methods"),
    ("unknown-method", {"selection": {"methods": ["lightgbm_gain", "catboost", "permutation", "shap"]}}, "spec.selection.methods[3]"),
    ("both-strong", {"routing": {"bothStrongBehavior": "EITHER"}}, "spec.routing.bothStrongBehavior"),
    ("retain-policy", {"artifacts": {"retainPolicy": "Keep"}}, "spec.artifacts.retainPolicy"),
    ("toleration-effect", {"stages": {"gpu": {"tolerations": [{"key": "k", "effect": "NoRun"}]}}}, "spec.stages.gpu.tolerations[0].effect"),
    # patterns and types
    ("symbol-with-space", {"data": {"symbols": ["BRK B"]}}, "spec.data.symbols[0]"),
    ("interval-words", {"data": {"interval": "5 minutes"}}, "spec.data.interval"),
    ("claim-name-case", {"data": {"volume": {"claimName": "Bars_2024"}}}, "spec.data.volume.claimName"),
    ("claim-name-missing", {"data": {"volume": {"claimName": None, "mountPath": "/bars"}}}, "spec.data.volume.claimName"),
    ("mount-path-relative", {"data": {"volume": {"mountPath": "bars"}}}, "spec.data.volume.mountPath"),
    ("artifacts-size", {"artifacts": {"size": "ten gigs"}}, "spec.artifacts.size"),
    ("family-limit", {"stages": {"cpu": {"families": {"catboost": {"limits": {"memory": "8 GB"}}}}}}, "spec.stages.cpu.families.catboost.limits.memory"),
    ("label-too-long", {"stages": {"report": {"podMetadata": {"labels": {"team": "x" * 64}}}}}, "spec.stages.report.podMetadata.labels.team"),
    ("suspend-yes", {"suspend": "yes"}, "spec.suspend"),
    ("include-a-string", {"targets": {"include": "fwd_ret_1d"}}, "spec.targets.include"),
    # CEL
    ("dotdot-symbol", {"data": {"symbols": ["AAPL", "BRK..B"]}}, "data.symbols: a symbol may not contain '..' (it names a folder)"),
    ("targets-named-none", {"targets": {"auto": False, "include": None}}, "targets.include must name targets when targets.auto is false"),
    ("claim-and-storage-class", {"artifacts": {"claimName": "mine", "storageClassName": "fast"}},
     "artifacts: give claimName (an existing claim) or storageClassName/size (a claim the operator creates), not both"),
]


@pytest.mark.parametrize(("change", "says"), [case[1:] for case in REJECTED], ids=[case[0] for case in REJECTED])
def test_the_api_server_rejects_a_malformed_spec_naming_the_field(kube: Kube, namespace: str, change: dict[str, Any], says: str) -> None:
    with pytest.raises(ApiError) as err:
        kube.create(pipelines_path(namespace), pipeline_manifest("bad", validate=False, **change))
    assert err.value.status == 422, err.value.message
    assert says in err.value.message, err.value.message


def test_a_spec_that_leaves_out_the_symbols_is_accepted(kube: Kube, namespace: str) -> None:
    """No data.symbols means every symbol found: the rules on the list must hold for a list that is not there."""
    created = kube.create(pipelines_path(namespace), pipeline_manifest("every-symbol", data={"symbols": None}))
    assert not created["spec"]["data"].get("symbols")


def test_a_missing_data_claim_stalls_the_pipeline_and_no_job_is_created(kube: Kube, namespace: str, operator: OperatorProcess) -> None:
    kube.create(pipelines_path(namespace), pipeline_manifest("nodata", data={"volume": {"claimName": "no-such-bars"}}))
    stalled = wait_condition(kube, namespace, "nodata", "Stalled", timeout=60)
    assert stalled["reason"] == "InvalidSpec"
    assert f"PersistentVolumeClaim no-such-bars not found in namespace {namespace}" in stalled["message"]
    assert "spec.data.volume.claimName" in stalled["message"]
    assert kube.get(f"{BATCH}/namespaces/{namespace}/jobs")["items"] == []
