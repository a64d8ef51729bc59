"""Reads the local control plane's API-server audit log into requests and counts them by user, verb and resource.

Used by the least-privilege test (tests/cluster/test_least_privilege.py) and by benchmark scripts
under hack/. Standard library only, so a
script imports it without the test dependencies.

The log (localcluster/config/audit-policy.yaml) holds ServiceAccount requests only, at Metadata level, one
JSON event per line. A request can appear twice: long-running ones (watches) are logged when the
response starts and again when it completes; `read` keeps one per request. A short scenario records
`end_offset` before it runs and reads from there, which keeps out whatever other tests did before; a
long one (a benchmark, a whole test module) records an `AuditMark`, which also follows the API
server's rotation of the log at 100 MB. `Privileges` compares what requests used with what RBAC
rules grant (the chart's rules: `chart_rules`).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Verbs that change state. Reads are list, get and watch; `deletecollection` is a write too.
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
# The operator's RBAC rules: the one file the chart's Role and operator/deploy/rbac.yaml are made from.
RULES_FILE = Path(__file__).resolve().parents[2] / "helm" / "trainpipe" / "files" / "operator-rules.yaml"

Rule = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb), as RBAC grants it


def log_path(cluster_state: str | os.PathLike[str]) -> Path:
    """Where the API server writes the audit log, from the cluster's state folder (.cache/cluster)."""
    return Path(cluster_state) / "kwok" / "clusters" / "trainpipe" / "logs" / "audit.log"


def service_account(namespace: str, name: str) -> str:
    """The user name a ServiceAccount's requests carry."""
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


@dataclass(frozen=True)
class Request:
    """One API request as the audit log recorded it."""

    user: str
    verb: str  # the RBAC verb: get, list, watch, create, update, patch, delete, deletecollection
    group: str  # "" for the core group
    resource: str  # plural name; "" for a non-resource URL (/version, /apis, ...)
    subresource: str  # "status", "log", ... or ""
    namespace: str  # "" when cluster-scoped (or a non-resource URL)
    name: str  # "" for collections
    code: int  # the response code (0 when the log has none)
    uri: str

    @property
    def rule(self) -> Rule:
        """(apiGroup, resource[/subresource], verb): the terms an RBAC rule grants in."""
        return self.group, self.qualified_resource, self.verb

    @property
    def qualified_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @property
    def label(self) -> str:
        """kubectl's spelling: `jobs.batch`, `trainingpipelines.trainpipe.io/status`, `configmaps`;
        a non-resource request reads `nonResourceURL <path>`."""
        if not self.resource:
            return f"nonResourceURL {self.uri.split('?', 1)[0]}"
        name = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{name}/{self.subresource}" if self.subresource else name

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


def end_offset(path: str | os.PathLike[str]) -> int:
    """The log's current size: `read(path, start=end_offset(path))` later yields only newer requests."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _request(event: dict) -> Request:
    ref = event.get("objectRef") or {}
    return Request(
        user=(event.get("user") or {}).get("username", ""),
        verb=event.get("verb", ""),
        group=ref.get("apiGroup", ""),
        resource=ref.get("resource", ""),
        subresource=ref.get("subresource", ""),
        namespace=ref.get("namespace", ""),
        name=ref.get("name", ""),
        code=int((event.get("responseStatus") or {}).get("code") or 0),
        uri=event.get("requestURI", ""),
    )


def read(path: str | os.PathLike[str], start: int = 0,
         user: Callable[[str], bool] | None = None) -> Iterator[Request]:
    """Requests logged from byte `start` on (one per request), optionally only those whose user passes `user`.

    A request logged at ResponseStarted (a watch) and again at ResponseComplete is yielded once, with
    the code of its latest stage. A line cut short by a write in progress is left for the next read.
    """
    path = Path(path)
    if end_offset(path) < start:
        start = 0  # the log was replaced (a new cluster): everything in it is newer
    latest: dict[str, Request] = {}
    with path.open("rb") as fh:
        fh.seek(start)
        for number, raw in enumerate(fh):
            if not raw.endswith(b"\n"):
                break
            event = json.loads(raw)
            if event.get("kind") != "Event":
                continue
            req = _request(event)
            if user is not None and not user(req.user):
                continue
            latest[event.get("auditID") or f"line {number}"] = req  # a dict keeps the first stage's place
    yield from latest.values()


def in_namespace(namespace: str) -> Callable[[str], bool]:
    """A `user` filter for `read`: every ServiceAccount of `namespace` (an operator installed there, the Jobs' accounts)."""
    prefix = f"{SERVICE_ACCOUNT_PREFIX}{namespace}:"
    return lambda name: name.startswith(prefix)


def granted(rules: Iterable[dict]) -> set[Rule]:
    """(apiGroup, resource[/subresource], verb) for every combination a list of RBAC rules grants,
    comparable with `Request.rule` (helm/trainpipe/files/operator-rules.yaml, or a live Role's rules)."""
    return {(g, r, v) for rule in rules for g in rule.get("apiGroups", []) for r in rule.get("resources", [])
            for v in rule.get("verbs", [])}


def chart_rules(path: str | os.PathLike[str] = RULES_FILE) -> list[dict[str, Any]]:
    """The RBAC rules of helm/trainpipe/files/operator-rules.yaml, read now, so a check follows an edit of the file."""
    import yaml  # here, not at the top: the rest of this module is standard library for scripts

    rules = yaml.safe_load(Path(path).read_text())
    if not isinstance(rules, list):
        raise ValueError(f"{path}: expected a list of RBAC rules, got {type(rules).__name__}")
    return rules


def rule_label(rule: Rule) -> str:
    """kubectl's spelling of a granted or used rule: `create jobs.batch`, `update trainingpipelines.trainpipe.io/status`."""
    group, resource, verb = rule
    name, _, sub = resource.partition("/")
    return f"{verb} {name}.{group}{'/' + sub if sub else ''}" if group else f"{verb} {resource}"


@dataclass(frozen=True)
class Privileges:
    """What some requests used against what RBAC rules grant; `problems` is empty when they stayed inside the grant.

    `used` holds resource requests only: a non-resource URL (/version, /apis) is granted to every
    ServiceAccount by the cluster's discovery roles, not by the chart. A denied request (403) and any
    touch of Secrets are problems whatever the rules say: the operator must never need either.
    """

    used: frozenset[Rule]
    granted: frozenset[Rule]
    denied: tuple[Request, ...]
    secrets: tuple[Request, ...]

    @staticmethod
    def of(requests: Iterable[Request], rules: Iterable[dict[str, Any]]) -> Privileges:
        requests = list(requests)
        return Privileges(used=frozenset(r.rule for r in requests if r.resource), granted=frozenset(granted(rules)),
                          denied=tuple(r for r in requests if r.code == 403),
                          secrets=tuple(r for r in requests if r.resource == "secrets"))

    def covers(self, rule: Rule) -> bool:
        """Whether the rules grant `rule`, a `*` in a rule granting every group, resource or verb."""
        return any(all(g in (u, "*") for g, u in zip(grant, rule)) for grant in self.granted)

    @property
    def used_not_granted(self) -> list[Rule]:
        return sorted(r for r in self.used if not self.covers(r))

    @property
    def granted_not_used(self) -> list[Rule]:
        return sorted(self.granted - self.used)

    @property
    def problems(self) -> list[str]:
        """One line per request or rule outside the grant: used but not granted, denied (403), touching Secrets."""
        return ([f"used but not granted: {rule_label(r)}" for r in self.used_not_granted]
                + [f"denied (403): {r.user} {r.verb} {r.label} {r.uri}" for r in self.denied]
                + [f"touched Secrets ({r.code}): {r.user} {r.verb} {r.uri}" for r in self.secrets])

    def summary(self) -> str:
        """One line: whether used ⊆ granted, what is outside either way, and the 403 and Secrets counts."""
        def listed(rules: list[Rule]) -> str:
            return ", ".join(rule_label(r) for r in rules) or "none"

        return (f"used ⊆ granted: {'no' if self.used_not_granted else 'yes'}; used not granted: {listed(self.used_not_granted)}; "
                f"granted not used: {listed(self.granted_not_used)}; 403s: {len(self.denied)}; Secrets: {len(self.secrets)}")


@dataclass(frozen=True)
class AuditMark:
    """Where the audit log stood at a moment. The API server rotates it (at 100 MB by default) into
    `audit-<time>.log` beside it, which a long scenario outgrows: the file that was current then is
    found again by its inode."""

    inode: int
    offset: int
    at: float

    @staticmethod
    def now(log: str | os.PathLike[str]) -> AuditMark:
        try:
            st = os.stat(log)
        except FileNotFoundError:
            return AuditMark(0, 0, time.time())
        return AuditMark(st.st_ino, st.st_size, time.time())

    def segments(self, log: str | os.PathLike[str]) -> list[tuple[Path, int]]:
        """The files written since the mark, oldest first, each with the byte to start at."""
        files = sorted(Path(log).parent.glob("audit*.log"), key=lambda f: f.stat().st_mtime)
        marked = next((i for i, f in enumerate(files) if f.stat().st_ino == self.inode), None)
        if marked is None:  # the marked file itself was pruned (or the cluster made anew): whatever was written since
            return [(f, 0) for f in files if f.stat().st_mtime >= self.at]
        return [(files[marked], self.offset)] + [(f, 0) for f in files[marked + 1:]]

    def read(self, log: str | os.PathLike[str], user: Callable[[str], bool] | None = None) -> Iterator[Request]:
        """`read` over every file written since the mark (one per request within a file)."""
        for segment, offset in self.segments(log):
            yield from read(segment, offset, user)


def summarise(requests: Iterable[Request], *, writes_only: bool = False) -> Counter[tuple[str, str, str]]:
    """How many requests each (user, verb, resource label) made; `writes_only` keeps create/update/patch/delete."""
    return Counter((r.user, r.verb, r.label) for r in requests if r.is_write or not writes_only)


def summarise_log(path: str | os.PathLike[str], *, start: int = 0, user: Callable[[str], bool] | None = None,
                  writes_only: bool = False) -> Counter[tuple[str, str, str]]:
    """`summarise(read(path, start, user))`: the audit log's requests by (user, verb, resource label).

    For a benchmark: `start = end_offset(log)` before the runs; after them,
    `summarise_log(log, start=start, user=lambda u: u == operator_user, writes_only=True)`, each count
    divided by the number of runs, is the operator's API writes per run by verb and resource.
    """
    return summarise(read(path, start, user), writes_only=writes_only)


def format_summary(counts: Counter[tuple[str, str, str]], per: float = 1.0) -> str:
    """A plain table of `summarise`'s counts (divided by `per`, e.g. the number of pipeline runs), largest first."""
    if not counts:
        return "(no requests)"
    rows = [(user, verb, label, n / per) for (user, verb, label), n in counts.most_common()]
    width = max(len(f"{verb} {label}") for _, verb, label, _ in rows)
    lines = []
    for user in dict.fromkeys(r[0] for r in rows):
        lines.append(user)
        lines += [f"  {f'{verb} {label}':<{width}}  {n:g}" for u, verb, label, n in rows if u == user]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Summarise the local cluster's audit log by user, verb and resource.")
    parser.add_argument("log", nargs="?", default=str(log_path(Path(__file__).resolve().parents[2] / ".cache" / "cluster")))
    parser.add_argument("--namespace", help="only ServiceAccounts of this namespace")
    parser.add_argument("--writes", action="store_true", help="only create/update/patch/delete")
    parser.add_argument("--per", type=float, default=1.0, help="divide each count by this (e.g. pipeline runs)")
    args = parser.parse_args()
    print(format_summary(summarise_log(args.log, user=in_namespace(args.namespace) if args.namespace else None,
                                       writes_only=args.writes), per=args.per))
