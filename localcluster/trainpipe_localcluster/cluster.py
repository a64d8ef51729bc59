"""A handle on the running local cluster: admin client, tool binaries, claim folders, dumps after a failure."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from trainpipe_localcluster.kube import CORE, ApiError, Kube, write_token_kubeconfig
from trainpipe_localcluster.repo import CRD_FILE, RBAC_FILE

# The ServiceAccount operator/deploy/rbac.yaml grants the operator's ClusterRole to.
OPERATOR_NAMESPACE = "trainpipe-system"
OPERATOR_SERVICE_ACCOUNT = "trainpipe-operator"


@dataclass
class Cluster:
    """The running local cluster: admin client, paths to its tools, kubeconfigs and executor files."""

    kubeconfig: Path
    state: Path
    tools: dict[str, Path]
    kube: Kube
    started_here: bool

    @property
    def executor_dir(self) -> Path:
        return self.state / "executor"

    def binary(self, name: str) -> Path:
        component = {"kubectl": "kubernetes", "kube-apiserver": "kubernetes", "etcd": "etcd",
                     "kwok": "kwok", "kwokctl": "kwok", "helm": "helm"}[name]
        return self.tools[component] / "bin" / name

    def kubectl(self, *args: str, kubeconfig: Path | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary("kubectl")), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
                              capture_output=True, text=True, check=check, timeout=60)

    def claim_dir(self, namespace: str, claim: str) -> Path:
        """Host folder of a bound PersistentVolumeClaim (the executor mounts it into pods)."""
        pvc = self.kube.get(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        pv = self.kube.get(f"{CORE}/persistentvolumes/{pvc['spec']['volumeName']}")
        return Path(pv["spec"]["hostPath"]["path"])

    def pod_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """Output of a pod's container as the executor recorded it (no kubelet: `kubectl logs` can't)."""
        folder = self.executor_dir / "logs" / namespace / pod
        if container is None:
            logs = sorted(folder.glob("*.log"))
            if len(logs) != 1:
                raise AssertionError(f"pod {namespace}/{pod} has logs {[p.name for p in logs]}; name the container")
            return logs[0].read_text()
        return (folder / f"{container}.log").read_text()

    def service_account_kubeconfig(self, namespace: str, name: str, dest: Path,
                                   expiration_seconds: int = 3600) -> Path:
        """Create the ServiceAccount if needed and write a kubeconfig that acts as it (TokenRequest token)."""
        try:
            self.kube.create(f"{CORE}/namespaces/{namespace}/serviceaccounts",
                             {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
        except ApiError as err:
            if err.status != 409:
                raise
        token = self.kube.create(
            f"{CORE}/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": expiration_seconds}})["status"]["token"]
        return write_token_kubeconfig(dest, self.kube.creds.server, self.kube.creds.ca_file, token,
                                      f"system:serviceaccount:{namespace}:{name}")

    def apply(self, path: Path, namespace: str | None = None) -> None:
        """Server-side apply a manifest file with kubectl (as hack/ does): idempotent, our file wins conflicts."""
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager", "trainpipe-tests", "-f", str(path)]
        self.kubectl(*args, *(["-n", namespace] if namespace else []))

    def install_operator_access(self, kubeconfig: Path, expiration_seconds: int = 6 * 3600, crd: Path = CRD_FILE) -> Path:
        """The TrainingPipeline CRD (waited until Established) and operator/deploy/rbac.yaml applied,
        and a kubeconfig written that acts as the operator's ServiceAccount. Idempotent. `crd`: another
        checkout's CRD, for running that checkout's operator (its model refuses fields it does not know)."""
        self.apply(crd)
        # On a control plane started seconds ago the first wait can fail at once (the CRD not yet served to it):
        # it is asked again before giving up, with what kubectl said.
        for attempt in range(3):
            waited = self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crd), check=False)
            if waited.returncode == 0:
                break
            if attempt == 2:
                raise RuntimeError(f"the TrainingPipeline CRD ({crd}) did not become Established: {waited.stderr.strip() or waited.stdout.strip()}")
            time.sleep(2.0)
        self.apply(RBAC_FILE)
        return self.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, kubeconfig,
                                               expiration_seconds=expiration_seconds)

    def operator_log(self, namespace: str) -> Path:
        """Where the `operator` fixture writes the output of the operator watching `namespace`."""
        return self.state / "operators" / f"{namespace}.log"

    def dump(self, namespace: str) -> str:
        """Everything a reader needs after a failure: objects, pipelines, events, operator and executor output."""
        out: list[str] = [f"===== namespace {namespace} ====="]
        kinds = ["pods", "jobs.batch", "persistentvolumeclaims", "configmaps", "serviceaccounts",
                 "roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io"]
        got = self.kubectl("get", "-n", namespace, ",".join(kinds), "-o", "wide", check=False)
        out += ["--- objects", got.stdout + got.stderr]
        # Only when the CRD is installed: otherwise kubectl fails on the unknown resource.
        got = self.kubectl("get", "-n", namespace, "trainingpipelines.trainpipe.io", "-o", "yaml", check=False)
        if got.returncode == 0:
            out += ["--- trainingpipelines (yaml)", got.stdout]
        got = self.kubectl("get", "-n", namespace, "pods,jobs.batch", "-o", "yaml", check=False)
        out += ["--- pods and jobs (yaml)", got.stdout + got.stderr]
        got = self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False)
        out += ["--- events", got.stdout + got.stderr]
        got = self.kubectl("get", "nodes", "-o", "wide", check=False)
        out += ["--- nodes", got.stdout + got.stderr]
        for log in sorted((self.executor_dir / "logs" / namespace).glob("*/*.log")):
            text = log.read_text(errors="replace")
            out += [f"--- pod log {log.parent.name}/{log.name}", text[-4000:]]
        operator_log = self.operator_log(namespace)
        if operator_log.exists():
            lines = operator_log.read_text(errors="replace").splitlines()
            out += [f"--- operator log {operator_log} (last 300 lines)", "\n".join(lines[-300:])]
        shared_log = self.state / "operator.log"  # the operator of `make operator-up`, if one runs
        if shared_log.exists():
            lines = [ln for ln in shared_log.read_text(errors="replace").splitlines() if namespace in ln]
            if lines:
                out += ["--- operator.log of make operator-up (this namespace)", "\n".join(lines[-200:])]
        executor_log = self.state / "executor.log"
        if executor_log.exists():
            lines = [ln for ln in executor_log.read_text(errors="replace").splitlines() if namespace in ln
                     or "WARNING" in ln or "ERROR" in ln or "Traceback" in ln]
            out += ["--- executor.log (this namespace, warnings)", "\n".join(lines[-200:])]
        return "\n".join(out)
