"""The operator's /metrics in Prometheus text format, and the Grafana dashboard built on those series.

The series come from the operator's own code paths, not from calling the metrics by hand: `decide`
decisions applied by `act` (against a recording fake of the API) and `Metrics.record_status`, served
by `main.http_app`'s /metrics endpoint and parsed with prometheus_client's own parser. The dashboard
(operator/deploy/grafana-dashboard.json) may only query series that this output holds.
tests/cluster/test_gitops.py checks the dashboard against a running operator's /metrics as well.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the operator extra: pip install -e .[operator]")
pytest.importorskip("aiohttp", reason="the operator extra: pip install -e .[operator]")

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from trainpipe.contract.names import Stage  # noqa: E402
from trainpipe.contract.pipeline import PipelineSpec  # noqa: E402
from trainpipe.contract.runs import run_id  # noqa: E402
from trainpipe.contract.status import PipelineStatus, StageStatus  # noqa: E402
from trainpipe.kube.pods import ObservedPod  # noqa: E402
from trainpipe_operator.act import act  # noqa: E402
from trainpipe_operator.config import OperatorConfig  # noqa: E402
from trainpipe_operator.decide import decide  # noqa: E402
from trainpipe_operator.main import http_app  # noqa: E402
from trainpipe_operator.metrics import Metrics  # noqa: E402
from trainpipe_operator.naming import job_name  # noqa: E402
from trainpipe_operator.observed import Observed, ObservedJob, PipelineView  # noqa: E402

DASHBOARD = Path(__file__).resolve().parents[2] / "operator" / "deploy" / "grafana-dashboard.json"
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
SPEC = PipelineSpec.model_validate({"data": {"dir": "example", "volume": {"claimName": "bars"}}, "training": {"families": ["lightgbm"]}})
RUN = run_id(SPEC)
METRIC = re.compile(r"\btrainpipe_[a-zA-Z0-9_]+\b")


class RecordingKube:
    """What `act` calls on the API, recorded; every write succeeds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def create(self, collection: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self.calls.append(("dry-run" if dry_run else "create", collection))
        return body

    def replace(self, resource_path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("replace", resource_path))
        return body

    def merge_patch(self, resource_path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", resource_path))
        return body

    def delete(self, resource_path: str, propagation: str = "Background") -> dict[str, Any]:
        self.calls.append(("delete", resource_path))
        return {}


def view(status: PipelineStatus | None = None, name: str = "demo") -> PipelineView:
    return PipelineView(namespace="ns", name=name, uid=f"uid-{name}", generation=1, spec=SPEC, spec_error=None,
                        status=status or PipelineStatus(), rerun_token=None, retry_token=None)


def rank_job(pipeline: str = "demo", **kw: Any) -> ObservedJob:
    return ObservedJob(name=job_name(pipeline, RUN, Stage.RANK, None, 0), run=RUN, stage=Stage.RANK, family=None, attempt=0,
                       completions=1, indexed=False, **kw)


def exercised_metrics() -> Metrics:
    """A Metrics registry fed the way the operator feeds it: a new run, a finished stage, a failed one, statuses, passes."""
    metrics, kube = Metrics(), RecordingKube()
    new = decide(view(), Observed(), CONFIG, NOW)  # creates the claim and the rank Job
    act(kube, {"status": {}}, view(), new, metrics)
    started = new.status.model_copy(update={"stages": {"rank": StageStatus(active=1, started_at="2026-12-01T11:59:00Z")}})
    done = rank_job(succeeded=1, complete=True)
    report = ObservedPod(name=f"{done.name}-x", job=done.name, index=None, phase="Succeeded", message='{"stage":"rank","selected":1}')
    finished = decide(view(started), Observed(jobs=(done,), pods=(report,)), CONFIG, NOW)  # rank succeeds, select starts
    act(kube, {"status": {}}, view(started), finished, metrics)
    broken = rank_job("other", failed=1, failed_condition="BackoffLimitExceeded: Job has reached the specified backoff limit")
    failed = decide(view(started, "other"), Observed(jobs=(broken,)), CONFIG, NOW)
    act(kube, {"status": {}}, view(started, "other"), failed, metrics)
    metrics.record_status(("ns", "demo"), finished.status)
    metrics.record_status(("ns", "other"), failed.status)
    metrics.reconcile_seconds.observe(0.02)
    metrics.reconcile_passes.labels(read="api").inc()
    metrics.reconcile_passes.labels(read="cache").inc(3)
    metrics.reconcile_errors.inc(0)
    metrics.watch_stalled.set(0)
    assert ("create", "/apis/batch/v1/namespaces/ns/jobs") in kube.calls
    return metrics


def scrape(metrics: Metrics) -> tuple[str, str]:
    """GET /metrics from the operator's own aiohttp app: (content type, body)."""
    reconciler = SimpleNamespace(metrics=metrics)

    async def get() -> tuple[str, str]:
        async with TestClient(TestServer(http_app(reconciler, asyncio.Event()))) as client:  # type: ignore[arg-type]
            resp = await client.get("/metrics")
            assert resp.status == 200
            return resp.headers["Content-Type"], await resp.text()

    return asyncio.run(get())


def own(families: dict[str, Any]) -> set[str]:
    """Family names, less the `<family>_created` timestamps prometheus_client adds beside counters and histograms
    (parsed as gauge families of their own; `trainpipe_jobs_created` itself is a real counter)."""
    return {n for n in families if not (n.endswith("_created") and n.removesuffix("_created") in families)}


@pytest.fixture(scope="module")
def exported() -> dict[str, Any]:
    content_type, text = scrape(exercised_metrics())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {s.name: s for f in families.values() for s in f.samples}
    return {"content_type": content_type, "families": families, "samples": samples,
            "series": {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}}


def test_metrics_are_served_in_prometheus_text_format(exported: dict[str, Any]) -> None:
    assert exported["content_type"].startswith("text/plain; version=")
    kinds = {name: f.type for name, f in exported["families"].items() if name in own(exported["families"])}
    assert kinds == {
        "trainpipe_pipelines": "gauge",
        "trainpipe_stage_duration_seconds": "histogram",
        "trainpipe_jobs_created": "counter",
        "trainpipe_jobs_finished": "counter",
        "trainpipe_reconcile_duration_seconds": "histogram",
        "trainpipe_reconcile_passes": "counter",
        "trainpipe_status_writes": "counter",
        "trainpipe_reconcile_errors": "counter",
        "trainpipe_create_refusals": "counter",
        "trainpipe_watch_stalled": "gauge",
        "trainpipe_watch_events": "counter",
    }
    assert all(f.documentation for f in exported["families"].values()), "every family has HELP text"


def test_series_carry_what_the_operator_did(exported: dict[str, Any]) -> None:
    series = exported["series"]
    assert series[("trainpipe_pipelines", (("condition", "Reconciling"),))] == 1.0  # demo: select runs
    assert series[("trainpipe_pipelines", (("condition", "Stalled"),))] == 1.0
    assert series[("trainpipe_pipelines", (("condition", "Ready"),))] == 0.0
    assert series[("trainpipe_jobs_created_total", (("stage", "rank"),))] == 1.0
    assert series[("trainpipe_jobs_created_total", (("stage", "select"),))] == 1.0
    assert series[("trainpipe_jobs_finished_total", (("outcome", "Succeeded"), ("stage", "rank")))] == 1.0
    assert series[("trainpipe_jobs_finished_total", (("outcome", "Failed"), ("stage", "rank")))] == 1.0
    assert series[("trainpipe_stage_duration_seconds_count", (("outcome", "Succeeded"), ("stage", "rank")))] == 1.0
    assert series[("trainpipe_stage_duration_seconds_bucket", (("le", "+Inf"), ("outcome", "Succeeded"), ("stage", "rank")))] == 1.0
    assert series[("trainpipe_reconcile_duration_seconds_count", ())] == 1.0
    assert series[("trainpipe_reconcile_passes_total", (("read", "cache"),))] == 3.0
    assert series[("trainpipe_status_writes_total", (("change", "state"),))] == 3.0  # a run started, a stage handed off, a stage failed


def dashboard_exprs() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in doc["panels"] for target in panel.get("targets", [])]


def test_the_dashboard_is_grafana_json_with_a_prometheus_datasource_variable() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] and doc["schemaVersion"] >= 36
    assert [v["name"] for v in doc["templating"]["list"] if v["type"] == "datasource" and v["query"] == "prometheus"] == ["datasource"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in doc["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_dashboard_query_uses_only_series_the_operator_exports(exported: dict[str, Any]) -> None:
    names = set(exported["samples"])
    labels: dict[str, set[str]] = {}
    for (name, pairs), _ in exported["series"].items():
        labels.setdefault(name, set()).update(k for k, _ in pairs)
    unknown = [(title, m) for title, expr in dashboard_exprs() for m in METRIC.findall(expr) if m not in names]
    assert not unknown, f"dashboard queries name series /metrics does not export: {unknown}"
    for title, expr in dashboard_exprs():
        used = METRIC.findall(expr)
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for label in (g.strip() for g in group.split(",")):
                assert any(label in labels[m] for m in used), f"{title}: no series of {used} has label {label!r}"
        for label in re.findall(r"\{(\w+)=", expr):
            assert any(label in labels[m] for m in used), f"{title}: no series of {used} has label {label!r}"
    families = own(exported["families"])
    covered = {f for f in families if any(f in m for _, expr in dashboard_exprs() for m in METRIC.findall(expr))}
    assert covered == families, f"series no panel shows: {families - covered}"
