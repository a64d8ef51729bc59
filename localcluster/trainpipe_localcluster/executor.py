"""Pod executor and volume provisioner for the local kwok cluster: runs bound pods as host processes.

Started by localcluster/up.sh (`python -m trainpipe_localcluster.executor --kubeconfig ... --state-dir ...`)
and stopped by localcluster/down.sh through its pidfile. kwok simulates the nodes only; this process
plays the kubelet for every pod the real kube-scheduler bound to a simulated node (one annotated
kwok.x-k8s.io/node=fake, as bootstrap.yaml's are). Pods bound to any other node, such as the real
node of localcluster/node/, are left to that node's kubelet:

* Pending + bound -> volumes prepared, status Running, each container's command + args run as a
  local process with the pod's env and working dir, then status Succeeded/Failed with exit code,
  reason and termination message, so the real Job controller completes or retries the Job.
* Pods labelled `executor.trainpipe.io/skip: "true"` are marked Succeeded without running (scale
  tests); the annotation `executor.trainpipe.io/termination-message` becomes their termination
  message, so a skipped stage can still hand the operator what it would have reported. Deleted pods have their processes killed (kwok's pod-delete stage removes the object).

Mapping from container to host process (images are ignored):

* argv[0] `python`, `python3`, `python3.X` (also as an absolute path) -> the venv's python (this
  executor's interpreter); any other name that exists in the venv's bin/ (`trainpipe`, `kopf`)
  -> that script; everything else -> looked up on the host PATH. A container without `command`
  uses the image's known entrypoint (`--entrypoint IMAGE=CMD`; by default jobs-cpu and jobs-gpu run
  `trainpipe`, operator `trainpipe-operator`), else the pod fails with a message saying so.
* Every volume mountPath is rewritten to the volume's host folder wherever it appears, at a path
  boundary, in command, args, env values and workingDir: a PVC -> its claim folder
  (`<state-dir>/volumes/<namespace>/<claim>`), a ConfigMap/Secret -> files in a per-pod folder,
  emptyDir/projected -> per-pod folders. The terminationMessagePath is rewritten the same way.
* ServiceAccount tokens, as a kubelet mounts them: the API server's ServiceAccount admission adds
  the projected volume `kube-api-access-*` (unless automountServiceAccountToken is false); its
  `serviceAccountToken` source becomes a TokenRequest token of the pod's ServiceAccount bound to the
  pod (refreshed at 80% of its lifetime while the pod runs), beside ca.crt (ConfigMap
  kube-root-ca.crt) and namespace (downward API). Programs read these at fixed paths (the
  official client's load_incluster_config reads /var/run/secrets/kubernetes.io/serviceaccount/*),
  so mounts under /var/run/secrets and /run/secrets are also bind-mounted at their real path in a
  private mount namespace of the container's process (`unshare --mount`; needs root, checked at
  start: without it they are only rewritten like the others, and the executor logs a warning).
* workingDir: rewritten as above; absent -> a per-pod scratch folder. HOME and TMPDIR point into it.
* resourceFieldRef (env and downwardAPI files) as a kubelet computes it: the container's limit or
  request, a missing cpu/memory/ephemeral-storage limit replaced by the node's allocatable, divided
  by `divisor` and rounded up to an integer (see `resource_field_value`).
* Output (stdout + stderr) -> `<state-dir>/logs/<namespace>/<pod>/<container>.log`
  (restarts: `<container>.restart-<n>.log`).

Provisioner: every PVC of the StorageClass whose provisioner is `trainpipe.io/local-dir` gets a
hostPath PersistentVolume pre-bound to it (folder created here, mode 0777 as rancher's
local-path-provisioner makes it: the real node's kubelet bind-mounts it into containers running as the
images' non-root user); Released volumes are deleted with their folder (reclaimPolicy Delete).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from trainpipe.contract.quantity import parse_quantity
from trainpipe_localcluster.kube import CORE, STRATEGIC, ApiError, Kube

PROVISIONER = "trainpipe.io/local-dir"
# Nodes kwok simulates carry this annotation (kwok manages only those); only their pods are ours.
SIMULATED_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SKIP_LABEL = "executor.trainpipe.io/skip"
SKIP_MESSAGE_ANNOTATION = "executor.trainpipe.io/termination-message"
VENV_BIN = Path(sys.executable).parent
PYTHON_NAMES = re.compile(r"^python(3(\.\d+)?)?$")
# What the images' entrypoints run, by image name (the last path part, without tag or digest; a name that
# contains a key also matches, first key first): images/*/Dockerfile put tini in front, which a host
# process does without.
DEFAULT_ENTRYPOINTS = {"jobs-cpu": "trainpipe", "jobs-gpu": "trainpipe", "operator": "trainpipe-operator", "trainpipe": "trainpipe"}
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_LINES = 80
# Mounts programs find by a fixed path rather than through args or env (ServiceAccount tokens).
BIND_MOUNT_ROOTS = ("/var/run/secrets/", "/run/secrets/")
TOKEN_REFRESH_FRACTION = 0.8  # a kubelet rotates a projected token once 80% of its lifetime is gone
# Runs in the container's own mount namespace: bind each HOST DIR pair, then exec the command.
BIND_SCRIPT = ('while [ "$1" != -- ]; do mkdir -p "$2" && mount --bind "$1" "$2" || exit 125; shift 2; done; '
               'shift; exec "$@"')

log = logging.getLogger("executor")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rewrite_paths(text: str, mapping: list[tuple[str, str]]) -> str:
    """Replace each in-container path prefix by its host folder, only at path boundaries.

    One pass with the longest prefix first, so a host folder put in is never rewritten again.
    """
    if not mapping:
        return text
    hosts = {inner.rstrip("/") or "/": host for inner, host in mapping}
    alternatives = "|".join(re.escape(p) for p in sorted(hosts, key=len, reverse=True))
    pattern = r"(?<![\w.\-/])(" + alternatives + r")(?=$|[/\s'\"`;:,)=])"
    return re.sub(pattern, lambda m: hosts[m.group(1)], text)


# The limits a kubelet replaces by the node's allocatable when a container sets none
# (defaultPodLimitsForDownwardAPI), so a process never reads "0 cpus".
NODE_DEFAULTED_LIMITS = ("cpu", "memory", "ephemeral-storage")


def resource_field_value(resource: str, resources: dict[str, Any], allocatable: dict[str, Any],
                         divisor: str | int | None = None) -> str:
    """What a kubelet puts in an env var or file with `resourceFieldRef` (resource, divisor).

    `resources` is the container's requests/limits, `allocatable` its node's. The value is the limit
    (limits.*) or request (requests.*); a missing cpu/memory/ephemeral-storage limit is the node's
    allocatable. It is divided by `divisor` (default 1: whole cores, bytes) and rounded up, in
    milli-units for cpu as the kubelet does, so any positive cpu limit gives at least 1.
    """
    kind, _, name = resource.partition(".")
    supported = name in NODE_DEFAULTED_LIMITS or name.startswith("hugepages-")
    if kind not in ("limits", "requests") or not supported:
        raise ValueError(f"resourceFieldRef {resource!r}: a kubelet supports only limits.*/requests.* of "
                         "cpu, memory, ephemeral-storage and hugepages-<size>")
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "limits" and name in NODE_DEFAULTED_LIMITS:
        raw = allocatable.get(name)
    amount = parse_quantity(raw if raw is not None else 0)
    per = parse_quantity(divisor) if divisor not in (None, "", 0, "0") else Fraction(1)
    if per <= 0:
        raise ValueError(f"resourceFieldRef {resource!r}: divisor {divisor!r} must be positive")
    # As resource.Quantity does: cpu in whole millicores (MilliValue), the rest in whole units
    # (Value), each rounded up, then the quotient rounded up.
    scale = 1000 if name == "cpu" else 1
    return str(math.ceil(Fraction(math.ceil(amount * scale), math.ceil(per * scale))))


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined vars are substituted, $$(VAR) escapes."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$?\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, text)


# A container's end in the executor's log, with what a memory limit on a real node would have to hold:
# benchmarks read each pod's peak from these lines (EXIT_LINE).
EXIT_FORMAT = "%s/%s[%s]: exited %d, peak RSS %s"
EXIT_LINE = re.compile(r"(?P<ns>[\w.-]+)/(?P<pod>[\w.-]+)\[(?P<container>[\w.-]+)\]: exited (?P<code>-?\d+), peak RSS (?P<kib>\d+) KiB")


def wait_with_peak(proc: subprocess.Popen[bytes]) -> tuple[int, int | None]:
    """Wait for a container's process: its exit code (negative: killed by that signal, as Popen says), and the
    peak resident set in KiB of it and of the children it waited for (wait4), or None when another thread
    (a pod being stopped) reaped it first."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return proc.wait(), None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss


def bind_mount_prefix() -> list[str]:
    """The command that gives a process its own mount namespace (`unshare --mount`), or [] when this
    host refuses one (not root): then fixed-path mounts are only rewritten like the others."""
    unshare = shutil.which("unshare")
    if unshare and shutil.which("mount"):
        prefix = [unshare, "--mount", "--propagation", "private"]
        probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return prefix
        reason = probe.stderr.strip() or f"exit status {probe.returncode}"
    else:
        reason = "unshare or mount is not on PATH"
    log.warning("no private mount namespaces (%s): ServiceAccount tokens are not at "
                "/var/run/secrets/kubernetes.io/serviceaccount for pod processes", reason)
    return []


class PodRun:
    """One pod's life on the simulated node: volumes, processes, status updates."""

    def __init__(self, ex: Executor, pod: dict[str, Any]) -> None:
        self.ex = ex
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.path = f"{CORE}/namespaces/{self.ns}/pods/{self.name}"
        self.dir = ex.state / "pods" / self.ns / f"{self.name}-{self.uid[:8]}"
        self.log_dir = ex.state / "logs" / self.ns / self.name
        self.deleted = threading.Event()
        self.ended = threading.Event()  # run() returned: token refreshes stop
        self.tokens: list[tuple[Path, dict[str, Any]]] = []  # projected token files and their sources
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()
        # containerStatuses has no merge key in the API, so a patch replaces the whole list: keep
        # every container's latest status here and always send them all.
        self.statuses: dict[str, dict[str, Any]] = {}
        self.status_lock = threading.Lock()

    # -- status --------------------------------------------------------------------------------
    def patch_status(self, status: dict[str, Any]) -> bool:
        if self.deleted.is_set():
            return False
        try:
            self.ex.kube.patch(f"{self.path}/status", {"metadata": {"uid": self.uid}, "status": status},
                               STRATEGIC)
        except ApiError as err:
            if err.status in (404, 409, 422):  # gone, or replaced by a new pod with the same name
                log.info("%s/%s: status not written (%s)", self.ns, self.name, err)
                return False
            raise
        return True

    def publish(self, container_status: dict[str, Any] | None = None, **status: Any) -> bool:
        """Patch pod status, with the full containerStatuses list including this container's update."""
        with self.status_lock:
            if container_status:
                self.statuses[container_status["name"]] = container_status
            order = [c["name"] for c in self.pod["spec"]["containers"]]
            if self.statuses:
                status["containerStatuses"] = [self.statuses[n] for n in order if n in self.statuses]
            return self.patch_status(status)

    def conditions(self, ready: bool, reason: str | None = None) -> list[dict[str, Any]]:
        t = now()
        conds = [{"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": t},
                 {"type": "Initialized", "status": "True", "lastTransitionTime": t}]
        for ctype in ("ContainersReady", "Ready"):
            c = {"type": ctype, "status": "True" if ready else "False", "lastTransitionTime": t}
            if reason:
                c["reason"] = reason
            conds.append(c)
        return conds

    def fail_before_start(self, reason: str, message: str) -> None:
        log.warning("%s/%s: %s: %s", self.ns, self.name, reason, message)
        statuses = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                     "restartCount": 0, "started": False,
                     "state": {"terminated": {"exitCode": 128, "reason": reason, "message": message,
                                              "startedAt": now(), "finishedAt": now()}}}
                    for c in self.pod["spec"]["containers"]]
        self.patch_status({"phase": "Failed", "reason": reason, "message": message,
                           "startTime": now(), "conditions": self.conditions(False, "PodFailed"),
                           "containerStatuses": statuses})

    # -- volumes -------------------------------------------------------------------------------
    def prepare_volumes(self) -> dict[str, str]:
        """Return volume name -> host folder, creating per-pod folders and files."""
        host: dict[str, str] = {}
        for vol in self.pod["spec"].get("volumes", []) or []:
            name = vol["name"]
            folder = self.dir / "volumes" / name
            if "persistentVolumeClaim" in vol:
                host[name] = self.claim_folder(vol["persistentVolumeClaim"]["claimName"])
                continue
            folder.mkdir(parents=True, exist_ok=True)
            if "configMap" in vol:
                self.write_items(folder, self.source_data("configmaps", vol["configMap"]), vol["configMap"])
            elif "secret" in vol:
                src = dict(vol["secret"], name=vol["secret"].get("secretName"))
                self.write_items(folder, self.source_data("secrets", src), src)
            elif "downwardAPI" in vol:
                self.write_downward(folder, vol["downwardAPI"].get("items") or [])
            elif "projected" in vol:
                for source in vol["projected"].get("sources", []) or []:
                    for key, resource in (("configMap", "configmaps"), ("secret", "secrets")):
                        if key in source:
                            self.write_items(folder, self.source_data(resource, source[key]), source[key])
                    self.write_downward(folder, (source.get("downwardAPI") or {}).get("items") or [])
                    if "serviceAccountToken" in source:
                        token = (folder / source["serviceAccountToken"]["path"], source["serviceAccountToken"])
                        self.write_token(*token)
                        self.tokens.append(token)
            host[name] = str(folder)
        return host

    def write_token(self, target: Path, source: dict[str, Any]) -> None:
        """A TokenRequest token of the pod's ServiceAccount, bound to this pod, written atomically."""
        account = self.pod["spec"].get("serviceAccountName") or "default"
        spec: dict[str, Any] = {"expirationSeconds": int(source.get("expirationSeconds") or 3600),
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}}
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        status = self.ex.kube.create(f"{CORE}/namespaces/{self.ns}/serviceaccounts/{account}/token",
                                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.new")
        scratch.write_text(status["status"]["token"])
        os.replace(scratch, target)

    def refresh_tokens(self) -> None:
        """Rewrite the pod's projected tokens at 80% of their lifetime until the pod ends (as a kubelet)."""
        lifetime = min(int(source.get("expirationSeconds") or 3600) for _, source in self.tokens)
        interval = TOKEN_REFRESH_FRACTION * lifetime
        while not self.ended.wait(interval):
            try:
                for target, source in self.tokens:
                    self.write_token(target, source)
                interval = TOKEN_REFRESH_FRACTION * lifetime
            except (ApiError, OSError) as err:  # the old token is still valid for a while: retry soon
                log.warning("%s/%s: token refresh failed (%s); retrying in 10s", self.ns, self.name, err)
                interval = 10

    def write_downward(self, folder: Path, items: list[dict[str, Any]]) -> None:
        for item in items:
            target = folder / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if "fieldRef" in item:
                target.write_text(self.field(item["fieldRef"]["fieldPath"]))
            elif "resourceFieldRef" in item:  # in a volume, containerName is required
                target.write_text(self.resource_field(item["resourceFieldRef"], None))

    def claim_folder(self, claim: str) -> str:
        """Host folder of a bound claim; waits briefly for the binding (the kubelet would too)."""
        deadline = time.monotonic() + 30
        while True:
            pvc = self.ex.kube.get(f"{CORE}/namespaces/{self.ns}/persistentvolumeclaims/{claim}")
            volume = pvc["spec"].get("volumeName")
            if volume and pvc.get("status", {}).get("phase") == "Bound":
                pv = self.ex.kube.get(f"{CORE}/persistentvolumes/{volume}")
                path = (pv["spec"].get("hostPath") or pv["spec"].get("local") or {}).get("path")
                if not path:
                    raise RuntimeError(f"PersistentVolume {volume} has neither hostPath nor local path")
                Path(path).mkdir(parents=True, exist_ok=True)
                return path
            if time.monotonic() > deadline:
                raise RuntimeError(f"claim {claim} is not bound after 30s; check its events")
            time.sleep(0.2)

    def source_data(self, resource: str, ref: dict[str, Any]) -> dict[str, bytes]:
        try:
            obj = self.ex.kube.get(f"{CORE}/namespaces/{self.ns}/{resource}/{ref['name']}")
        except ApiError as err:
            if err.status == 404 and ref.get("optional"):
                return {}
            raise
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()} if resource == "configmaps" else \
            {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        if resource == "configmaps":
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    @staticmethod
    def write_items(folder: Path, data: dict[str, bytes], ref: dict[str, Any]) -> None:
        items = ref.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                continue
            target = folder / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[item["key"]])

    def field(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
        if m:
            return (meta.get(m.group(1)) or {}).get(m.group(2), "")
        return {
            "metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"], "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
        }.get(path, "")

    def resource_field(self, ref: dict[str, Any], container: dict[str, Any] | None) -> str:
        """Value of a resourceFieldRef: of `container`, or of the one it names in containerName."""
        if ref.get("containerName"):
            named = [c for c in self.pod["spec"]["containers"] if c["name"] == ref["containerName"]]
            if not named:
                raise RuntimeError(f"resourceFieldRef {ref['resource']}: pod has no container {ref['containerName']!r}")
            container = named[0]
        if container is None:
            raise RuntimeError(f"resourceFieldRef {ref['resource']}: containerName is required in a volume")
        try:
            return resource_field_value(ref["resource"], container.get("resources") or {},
                                        self.ex.allocatable(self.pod["spec"].get("nodeName", "")), ref.get("divisor"))
        except ValueError as err:
            raise RuntimeError(str(err)) from None

    # -- containers ----------------------------------------------------------------------------
    def container_env(self, c: dict[str, Any], scratch: Path) -> dict[str, str]:
        api = self.ex.kube.creds.server.split("://", 1)[1]
        host, _, port = api.rpartition(":")
        env = {
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(scratch / "home"), "TMPDIR": str(scratch / "tmp"), "HOSTNAME": self.name,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
        }
        for src in c.get("envFrom", []) or []:
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                data = self.source_data("configmaps", src["configMapRef"])
            elif "secretRef" in src:
                data = self.source_data("secrets", src["secretRef"])
            else:
                continue
            env.update({prefix + k: v.decode() for k, v in data.items()})
        for var in c.get("env", []) or []:
            if "valueFrom" not in var:
                env[var["name"]] = expand_vars(var.get("value", ""), env)
                continue
            vf = var["valueFrom"]
            if "fieldRef" in vf:
                env[var["name"]] = self.field(vf["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
                kind = "configmaps" if "configMapKeyRef" in vf else "secrets"
                ref = vf.get("configMapKeyRef") or vf["secretKeyRef"]
                value = self.source_data(kind, ref).get(ref["key"])
                if value is None and not ref.get("optional"):
                    raise RuntimeError(f"env {var['name']}: key {ref['key']} not found in {kind[:-1]} {ref['name']}")
                if value is not None:
                    env[var["name"]] = value.decode()
            elif "resourceFieldRef" in vf:
                env[var["name"]] = self.resource_field(vf["resourceFieldRef"], c)
        return env

    def argv(self, c: dict[str, Any]) -> list[str]:
        command = list(c.get("command") or [])
        if not command:
            image = c.get("image", "").rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
            entry = self.ex.entrypoints.get(image) or next(
                (v for k, v in self.ex.entrypoints.items() if k in image), None)
            if not entry:
                raise RuntimeError(
                    f"container {c['name']} has no command and the executor does not know the entrypoint "
                    f"of image {c.get('image')!r}: set `command`, or start the executor with --entrypoint IMAGE=CMD")
            command = entry.split()
        return command + list(c.get("args") or [])

    @staticmethod
    def resolve(exe: str, path: str) -> str:
        base = os.path.basename(exe)
        if PYTHON_NAMES.match(base):
            return sys.executable
        if (VENV_BIN / base).exists() and (base == exe or not os.path.exists(exe)):
            return str(VENV_BIN / base)
        if os.path.isabs(exe) and os.path.exists(exe):
            return exe
        return shutil.which(base, path=path) or exe

    def run_container(self, c: dict[str, Any], volumes: dict[str, str], attempt: int) -> dict[str, Any]:
        """Run one container to completion; return its `terminated` state."""
        scratch = self.dir / "containers" / c["name"]
        for sub in ("home", "tmp"):
            (scratch / sub).mkdir(parents=True, exist_ok=True)
        term_file = scratch / "termination-log"
        term_file.write_text("")
        mapping = [(m["mountPath"], volumes[m["name"]] + ("/" + m["subPath"] if m.get("subPath") else ""))
                   for m in c.get("volumeMounts", []) or [] if m["name"] in volumes]
        mapping.append((c.get("terminationMessagePath") or "/dev/termination-log", str(term_file)))
        mapping.sort(key=lambda pair: len(pair[0]), reverse=True)

        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / (f"{c['name']}.log" if attempt == 0 else f"{c['name']}.restart-{attempt}.log")
        started = now()
        try:
            env = {k: rewrite_paths(v, mapping) for k, v in self.container_env(c, scratch).items()}
            argv = [rewrite_paths(expand_vars(a, env), mapping) for a in self.argv(c)]
            argv[0] = self.resolve(argv[0], env["PATH"])
            binds = [(m["mountPath"], host) for m in c.get("volumeMounts", []) or [] if m["name"] in volumes
                     for host in [volumes[m["name"]] + ("/" + m["subPath"] if m.get("subPath") else "")]
                     if (m["mountPath"].rstrip("/") + "/").startswith(BIND_MOUNT_ROOTS)]
            if binds and self.ex.bind_mounts:
                argv = [*self.ex.bind_mounts, "sh", "-c", BIND_SCRIPT, "sh",
                        *(p for inner, host in binds for p in (host, inner)), "--", *argv]
            cwd = rewrite_paths(c["workingDir"], mapping) if c.get("workingDir") else str(scratch)
            Path(cwd).mkdir(parents=True, exist_ok=True)
        except (RuntimeError, ApiError, OSError) as err:
            log_path.write_text(f"executor: {err}\n")
            return {"exitCode": 128, "reason": "CreateContainerConfigError", "message": str(err),
                    "startedAt": started, "finishedAt": now()}
        log.info("%s/%s[%s]: %s (cwd %s)", self.ns, self.name, c["name"], argv, cwd)
        with open(log_path, "wb") as out:
            try:
                proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as err:
                out.write(f"executor: cannot start {argv[0]}: {err}\n".encode())
                return {"exitCode": 128, "reason": "StartError", "message": f"cannot start {argv[0]}: {err}",
                        "startedAt": started, "finishedAt": now()}
            with self.lock:
                self.procs[c["name"]] = proc
            if self.deleted.is_set():
                self.kill()
            # The container ID names the host process, so people and tests can find it.
            current = self.statuses.get(c["name"])
            if current is not None:  # init containers are not reported
                self.publish(dict(current, containerID=f"executor://{proc.pid}"))
            code, peak_kib = wait_with_peak(proc)
        with self.lock:
            self.procs.pop(c["name"], None)
        log.info(EXIT_FORMAT, self.ns, self.name, c["name"], code, "unknown" if peak_kib is None else f"{peak_kib} KiB")
        self.publish_cri_log(c["name"], log_path)
        exit_code = code if code >= 0 else 128 - code  # killed by signal N -> 128+N, as runtimes report
        message = term_file.read_bytes()[:MAX_TERMINATION_MESSAGE].decode(errors="replace")
        if not message and exit_code != 0 and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            tail = log_path.read_bytes().decode(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
            message = "\n".join(tail)[-2048:]
        state = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                 "startedAt": started, "finishedAt": now(), "containerID": f"executor://{proc.pid}"}
        if message:
            state["message"] = message
        return state

    def publish_cri_log(self, container: str, plain: Path) -> None:
        """Make `kubectl logs` work: kwok serves a pod's log from a CRI-format file named in a `Logs` object.

        Written when the container ends (the plain file stays what `pod_log` and the dumps read), so
        `kubectl logs` shows a finished container's output; a running one's is in the plain file.
        """
        cri = self.ex.state / "cri-logs" / self.ns / self.name / f"{container}.log"
        try:
            cri.parent.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            lines = plain.read_text(errors="replace").splitlines() if plain.exists() else []
            tmp = cri.with_suffix(".tmp")
            tmp.write_text("".join(f"{stamp} stdout F {line}\n" for line in lines))
            tmp.replace(cri)
            path = f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{self.ns}/logs"
            entry = {"containers": [container], "logsFile": str(cri)}
            try:
                self.ex.kube.create(path, {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
                                           "metadata": {"name": self.name, "namespace": self.ns}, "spec": {"logs": [entry]}})
            except ApiError as err:
                if err.status != 409:
                    raise
                # One Logs object per pod: another container of it published first, add this one.
                existing = self.ex.kube.get(f"{path}/{self.name}")
                logs = existing.setdefault("spec", {}).setdefault("logs", [])
                if not any(container in e.get("containers", []) for e in logs):
                    logs.append(entry)
                    self.ex.kube.request("PUT", f"{path}/{self.name}", existing)
        except ApiError as err:
            if err.status != 404:  # 404: a cluster started without the Logs resource
                log.warning("%s/%s: kubectl logs not published: %s", self.ns, self.name, err)
        except OSError as err:
            log.warning("%s/%s: CRI log not written: %s", self.ns, self.name, err)

    def container_status(self, c: dict[str, Any], state: dict[str, Any], restarts: int = 0,
                         last: dict[str, Any] | None = None) -> dict[str, Any]:
        running = "running" in state
        status = {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": running,
                  "started": running, "restartCount": restarts, "state": state,
                  "containerID": state.get("terminated", {}).get("containerID", "executor://")}
        if last:
            status["lastState"] = {"terminated": last}
        return status

    def run(self) -> None:
        spec = self.pod["spec"]
        containers = spec["containers"]
        if (self.pod["metadata"].get("labels") or {}).get(SKIP_LABEL) == "true":
            t = now()
            done = {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t}
            message = (self.pod["metadata"].get("annotations") or {}).get(SKIP_MESSAGE_ANNOTATION)
            if message:
                done["message"] = message[:MAX_TERMINATION_MESSAGE]
            self.patch_status({"phase": "Succeeded", "startTime": t, "hostIP": "127.0.0.1",
                               "conditions": self.conditions(False, "PodCompleted"),
                               "containerStatuses": [self.container_status(c, {"terminated": done})
                                                     for c in containers]})
            return
        try:
            volumes = self.prepare_volumes()
        except (RuntimeError, ApiError, OSError) as err:
            self.fail_before_start("CreateContainerConfigError", str(err))
            return
        if self.tokens:
            threading.Thread(target=self.refresh_tokens, daemon=True, name=f"tokens-{self.name}").start()
        start = now()
        self.patch_status({"phase": "Pending", "startTime": start, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                           "podIPs": [{"ip": "127.0.0.1"}]})
        for init in spec.get("initContainers", []) or []:
            state = self.run_container(init, volumes, 0)
            if state["exitCode"] != 0 or self.deleted.is_set():
                # As on a kubelet with restartPolicy Never: the pod fails, containers never start.
                with self.status_lock:
                    self.statuses = {c["name"]: self.container_status(c, {"waiting": {"reason": "PodInitializing"}})
                                     for c in containers}
                log.info("%s/%s: Failed (init container %s=%s)", self.ns, self.name, init["name"], state["exitCode"])
                self.publish(phase="Failed", conditions=self.conditions(False, "PodFailed"),
                             message=f"init container {init['name']} exited with {state['exitCode']}",
                             initContainerStatuses=[self.container_status(init, {"terminated": state})])
                return
        with self.status_lock:
            self.statuses = {c["name"]: self.container_status(c, {"running": {"startedAt": now()}}) for c in containers}
        self.publish(phase="Running", conditions=self.conditions(True))
        results: dict[str, dict[str, Any]] = {}
        restarts: dict[str, int] = {}
        lasts: dict[str, dict[str, Any]] = {}
        policy = spec.get("restartPolicy", "Always")

        def supervise(c: dict[str, Any]) -> None:
            attempt = 0
            while True:
                state = self.run_container(c, volumes, attempt)
                again = not self.deleted.is_set() and (
                    policy == "Always" or (policy == "OnFailure" and state["exitCode"] != 0))
                if not again:
                    results[c["name"]] = state
                    return
                attempt += 1
                restarts[c["name"]] = attempt
                lasts[c["name"]] = state
                backoff = min(10.0, 0.5 * 2 ** attempt)  # CrashLoopBackOff, compressed for tests
                waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": state.get("message", "")}}
                self.publish(self.container_status(c, waiting, attempt, state))
                if self.deleted.wait(backoff):
                    results[c["name"]] = state
                    return
                self.publish(self.container_status(c, {"running": {"startedAt": now()}}, attempt, state))

        threads = [threading.Thread(target=supervise, args=(c,), daemon=True) for c in containers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.finish({n: {"terminated": s} for n, s in results.items()}, containers,
                    failed=any(s["exitCode"] != 0 for s in results.values()), restarts=restarts, lasts=lasts)

    def finish(self, states: dict[str, dict[str, Any]], containers: list[dict[str, Any]], failed: bool,
               restarts: dict[str, int] | None = None, lasts: dict[str, dict[str, Any]] | None = None) -> None:
        restarts, lasts = restarts or {}, lasts or {}
        not_run = {"terminated": {"exitCode": 0, "reason": "NotStarted", "startedAt": now(), "finishedAt": now()}}
        statuses = [self.container_status(c, states.get(c["name"], not_run), restarts.get(c["name"], 0),
                                          lasts.get(c["name"]))
                    for c in containers]
        phase = "Failed" if failed else "Succeeded"
        log.info("%s/%s: %s (%s)", self.ns, self.name, phase,
                 ", ".join(f"{n}={s['terminated']['exitCode']}" for n, s in states.items()))
        with self.status_lock:
            self.statuses = {s["name"]: s for s in statuses}
        self.publish(phase=phase, conditions=self.conditions(False, "PodCompleted"))

    def kill(self) -> None:
        """Stop the pod's processes: TERM, then KILL after the grace period (at most 5s here)."""
        self.deleted.set()
        with self.lock:
            procs = list(self.procs.values())
        grace = min(5, int(self.pod["spec"].get("terminationGracePeriodSeconds", 30) or 0))
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


class Executor:
    """Watches pods and claims; owns the PodRun threads."""

    def __init__(self, kube: Kube, state: Path, entrypoints: dict[str, str]) -> None:
        self.kube = kube
        self.state = state
        self.entrypoints = entrypoints
        self.runs: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.bind_mounts = bind_mount_prefix()

    def node(self, name: str) -> dict[str, Any] | None:
        """The Node named `name`, read once (the simulated pool does not change), or None if there is none."""
        if not name:
            return None
        with self.lock:
            cached = self.nodes.get(name)
        if cached is None:
            try:
                cached = self.kube.get(f"{CORE}/nodes/{name}")
            except ApiError as err:
                if err.status == 404:
                    return None
                raise
            with self.lock:
                self.nodes[name] = cached
        return cached

    def allocatable(self, node: str) -> dict[str, Any]:
        """status.allocatable of a node: the simulated pool's capacity does not change."""
        return ((self.node(node) or {}).get("status") or {}).get("allocatable") or {}

    def simulates(self, node: str) -> bool:
        """Whether kwok simulates `node`, so that this executor runs its pods (a real kubelet runs the others)."""
        key, value = SIMULATED_NODE_ANNOTATION
        return ((self.node(node) or {}).get("metadata", {}).get("annotations") or {}).get(key) == value

    # -- generic list+watch loop ---------------------------------------------------------------
    def informer(self, path: str, handle: Callable[[str, dict[str, Any]], None]) -> None:
        while not self.stopping.is_set():
            try:
                listing = self.kube.get(path)
                for item in listing["items"]:
                    handle("ADDED", item)
                rv = listing["metadata"]["resourceVersion"]
                while not self.stopping.is_set():
                    for event in self.kube.watch(path, rv, timeout_seconds=60):
                        if event["type"] == "ERROR":
                            raise ApiError("WATCH", path, event["object"].get("code", 500), event["object"])
                        rv = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            handle(event["type"], event["object"])
            except Exception as err:  # noqa: BLE001 -- keep serving: relist after any failure
                if self.stopping.is_set():
                    return
                log.warning("watch %s: %s; relisting in 1s", path, err)
                time.sleep(1)

    # -- pods ------------------------------------------------------------------------------------
    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            run = self.runs.get(uid)
        if kind == "DELETED" or pod["metadata"].get("deletionTimestamp"):
            if run and not run.deleted.is_set():
                threading.Thread(target=run.kill, daemon=True).start()
            if kind == "DELETED":
                with self.lock:
                    self.runs.pop(uid, None)
            return
        phase = pod.get("status", {}).get("phase", "Pending")
        if run or not pod["spec"].get("nodeName") or not self.simulates(pod["spec"]["nodeName"]):
            return
        if phase == "Running":
            # Started by an executor that is gone: its processes died with it.
            run = PodRun(self, pod)
            with self.lock:
                self.runs[uid] = run
            threading.Thread(target=run.finish, daemon=True, args=(
                {c["name"]: {"terminated": {"exitCode": 137, "reason": "ExecutorLost",
                                            "message": "the executor running this pod restarted",
                                            "startedAt": now(), "finishedAt": now()}}
                 for c in pod["spec"]["containers"]}, pod["spec"]["containers"], True)).start()
            return
        if phase != "Pending":
            return
        run = PodRun(self, pod)
        with self.lock:
            self.runs[uid] = run
        threading.Thread(target=self._run_safely, args=(run,), daemon=True, name=f"pod-{run.name}").start()

    @staticmethod
    def _run_safely(run: PodRun) -> None:
        try:
            run.run()
        except Exception as err:
            log.exception("%s/%s: executor error", run.ns, run.name)
            try:
                run.fail_before_start("ExecutorError", f"{type(err).__name__}: {err}")
            except Exception:
                log.exception("%s/%s: could not report the executor error", run.ns, run.name)
        finally:
            run.ended.set()

    # -- provisioner -----------------------------------------------------------------------------
    def our_classes(self) -> set[str]:
        classes = self.kube.get("/apis/storage.k8s.io/v1/storageclasses")["items"]
        return {c["metadata"]["name"] for c in classes if c.get("provisioner") == PROVISIONER}

    def on_claim(self, kind: str, pvc: dict[str, Any]) -> None:
        if kind == "DELETED" or pvc["metadata"].get("deletionTimestamp") or pvc["spec"].get("volumeName"):
            return
        if pvc["spec"].get("storageClassName") not in self.our_classes():
            return
        meta = pvc["metadata"]
        folder = self.state / "volumes" / meta["namespace"] / meta["name"]
        folder.mkdir(parents=True, exist_ok=True)
        # Writable by every user, as rancher's local-path-provisioner makes its folders: on the real node
        # the kubelet bind-mounts it into containers running as the images' non-root user (10001).
        folder.chmod(0o777)
        pv = {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"pvc-{meta['uid']}",
                         "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
                         "labels": {"trainpipe.io/claim-namespace": meta["namespace"]}},
            "spec": {
                "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
                "accessModes": pvc["spec"].get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": pvc["spec"]["storageClassName"],
                "volumeMode": pvc["spec"].get("volumeMode", "Filesystem"),
                "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                             "name": meta["name"], "uid": meta["uid"]},
            },
        }
        try:
            self.kube.create(f"{CORE}/persistentvolumes", pv)
            log.info("provisioned %s for claim %s/%s at %s", pv["metadata"]["name"], meta["namespace"],
                     meta["name"], folder)
        except ApiError as err:
            if err.status != 409:
                raise

    def on_volume(self, kind: str, pv: dict[str, Any]) -> None:
        ann = pv["metadata"].get("annotations") or {}
        if kind == "DELETED" or ann.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            return
        if pv.get("status", {}).get("phase") in ("Released", "Failed"):
            path = Path(pv["spec"].get("hostPath", {}).get("path", ""))
            try:
                self.kube.delete(f"{CORE}/persistentvolumes/{pv['metadata']['name']}")
            except ApiError as err:
                if err.status != 404:
                    raise
            if path.is_relative_to(self.state):
                shutil.rmtree(path, ignore_errors=True)

    # -- lifecycle -------------------------------------------------------------------------------
    def serve(self) -> None:
        for path, handler in ((f"{CORE}/pods", self.on_pod),
                              (f"{CORE}/persistentvolumeclaims", self.on_claim),
                              (f"{CORE}/persistentvolumes", self.on_volume)):
            threading.Thread(target=self.informer, args=(path, handler), daemon=True, name=path).start()
        self.stopping.wait()

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            run.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig of the local cluster")
    parser.add_argument("--state-dir", required=True, type=Path, help="claim folders, pod folders and logs")
    parser.add_argument("--pidfile", type=Path, help="written at start, removed at exit")
    parser.add_argument("--entrypoint", action="append", default=[], metavar="IMAGE=CMD",
                        help="command for containers of IMAGE that set no `command` (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    entrypoints = dict(DEFAULT_ENTRYPOINTS)
    for item in args.entrypoint:
        image, _, cmd = item.partition("=")
        if not cmd:
            parser.error(f"--entrypoint {item!r}: expected IMAGE=CMD")
        entrypoints[image] = cmd
    state = args.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    executor = Executor(Kube(args.kubeconfig), state, entrypoints)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping pod processes", signum)
        executor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")
    log.info("executor serving (state %s, python %s)", state, sys.executable)
    try:
        executor.serve()
    finally:
        if args.pidfile and args.pidfile.exists() and args.pidfile.read_text().strip() == str(os.getpid()):
            args.pidfile.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
