"""trainpipe_localcluster.auditlog on a hand-written audit log: one count per request, offsets, filters and labels,
rotation, and requests against RBAC rules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from trainpipe_localcluster import auditlog

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


RULES = [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "list"]},
         {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
         {"apiGroups": ["trainpipe.io"], "resources": ["trainingpipelines/status"], "verbs": ["update"]}]


def test_privileges_name_each_use_without_a_grant_each_denial_and_each_touch_of_secrets(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, event("c", "create", "jobs", group="batch", code=201), event("g", "get", "configmaps"),
          event("u", "update", "configmaps", code=403, uri="/api/v1/namespaces/ns/configmaps/p-plan"),
          event("s", "get", "secrets", user=JOBS, code=403, uri="/api/v1/namespaces/ns/secrets/x"),
          event("st", "update", "trainingpipelines", group="trainpipe.io", sub="status"), event("d", "get", uri="/apis"))
    privileges = auditlog.Privileges.of(auditlog.read(log), RULES)
    assert privileges.used_not_granted == [("", "configmaps", "update"), ("", "secrets", "get")]
    assert privileges.granted_not_used == [("batch", "jobs", "list")]
    assert privileges.problems == [
        "used but not granted: update configmaps", "used but not granted: get secrets",
        f"denied (403): {OPERATOR} update configmaps /api/v1/namespaces/ns/configmaps/p-plan",
        f"denied (403): {JOBS} get secrets /api/v1/namespaces/ns/secrets/x",
        f"touched Secrets (403): {JOBS} get /api/v1/namespaces/ns/secrets/x"]
    assert privileges.summary() == ("used ⊆ granted: no; used not granted: update configmaps, get secrets; "
                                    "granted not used: list jobs.batch; 403s: 2; Secrets: 1")


def test_requests_inside_the_grant_pass_and_a_wildcard_grants_every_verb() -> None:
    requests = [auditlog.Request(OPERATOR, verb, "batch", "jobs", "", "ns", "", 200, "/x") for verb in ("create", "list")]
    inside = auditlog.Privileges.of(requests, RULES)
    assert not inside.problems
    assert inside.summary().startswith("used ⊆ granted: yes; used not granted: none; ")
    assert not auditlog.Privileges.of(requests + [auditlog.Request(OPERATOR, "patch", "batch", "jobs", "", "ns", "", 200, "/x")],
                                      [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["*"]}]).problems
    # The chart's own rules parse into grants (the operator creates Jobs whatever else changes).
    assert ("batch", "jobs", "create") in auditlog.Privileges.of([], auditlog.chart_rules()).granted


def test_a_mark_reads_on_across_the_api_server_s_rotation_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, event("before", "delete", "configmaps"))
    mark = auditlog.AuditMark.now(log)
    write(log, event("after", "create", "jobs", group="batch"))
    rotated = tmp_path / "audit-2026-12-01T21-00-00.000.log"
    log.rename(rotated)  # as the API server does at 100 MB: the marked file lives on under a new name
    os.utime(rotated, (mark.at, mark.at))
    write(log, event("later", "list", "pods"))
    os.utime(log, (mark.at + 1, mark.at + 1))  # newer than the mark, whatever the file system's clock granularity
    assert [r.verb for r in mark.read(log)] == ["create", "list"]
    rotated.unlink()  # the marked file pruned too: whatever was written since the mark
    assert [r.verb for r in mark.read(log)] == ["list"]
