"""tests/cluster/auditlog.py on a hand-written audit log: one count per request, offsets, filters and labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))
import auditlog  # noqa: E402 -- lives with the cluster tier, which benchmark scripts import it from too

OPERATOR = auditlog.service_account("ns", "tp-operator")
JOBS = auditlog.service_account("ns", "tp-jobs")


def event(audit_id: str, verb: str, resource: str = "", *, user: str = OPERATOR, group: str = "", sub: str = "",
          code: int = 200, stage: str = "ResponseComplete", uri: str = "/x") -> dict[str, Any]:
    ev: dict[str, Any] = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": audit_id, "stage": stage, "verb": verb,
                          "requestURI": uri, "user": {"username": user}, "responseStatus": {"code": code}}
    if resource:
        ev["objectRef"] = {"resource": resource, "namespace": "ns", "apiGroup": group, **({"subresource": sub} if sub else {})}
    return ev


def write(path: Path, *events: dict[str, Any], tail: str = "") -> None:
    with path.open("a") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in events)
        fh.write(tail)


def test_a_watch_logged_when_it_starts_and_when_it_ends_counts_once(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, event("w1", "watch", "jobs", group="batch", stage="ResponseStarted"), event("c1", "create", "jobs", group="batch", code=201),
          event("w1", "watch", "jobs", group="batch", stage="ResponseComplete"))
    counts = auditlog.summarise_log(log)
    assert counts == {(OPERATOR, "watch", "jobs.batch"): 1, (OPERATOR, "create", "jobs.batch"): 1}


def test_reading_from_an_offset_keeps_out_earlier_requests_and_a_half_written_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, event("old", "delete", "configmaps"))
    start = auditlog.end_offset(log)
    write(log, event("new", "update", "trainingpipelines", group="trainpipe.io", sub="status"), tail='{"kind": "Event", "verb": "cre')
    [req] = auditlog.read(log, start)
    assert req.label == "trainingpipelines.trainpipe.io/status" and req.rule == ("trainpipe.io", "trainingpipelines/status", "update")
    assert auditlog.end_offset(tmp_path / "missing.log") == 0


def test_filters_keep_one_namespace_s_accounts_and_writes_and_counts_divide_per_run(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, *(event(f"e{i}", "create", "events") for i in range(4)), event("g", "get", "configmaps"),
          event("j", "get", "secrets", user=JOBS, code=403), event("other", "create", "jobs", group="batch", user=auditlog.service_account("b", "op")),
          event("d", "get", uri="/apis"))
    mine = list(auditlog.read(log, user=auditlog.in_namespace("ns")))
    assert {r.user for r in mine} == {OPERATOR, JOBS}
    assert [r.code for r in mine if r.resource == "secrets"] == [403]
    assert [r.label for r in mine if not r.resource] == ["nonResourceURL /apis"]
    writes = auditlog.summarise(mine, writes_only=True)
    assert writes == {(OPERATOR, "create", "events"): 4}
    assert auditlog.format_summary(writes, per=2).splitlines() == [OPERATOR, "  create events  2"]
