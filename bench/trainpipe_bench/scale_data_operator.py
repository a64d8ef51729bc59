"""`make bench-scale-data` through the operator: each generated panel as a TrainingPipeline on the local cluster.

The panels and the pipeline are `scale_data`'s (same sizes, seed, families and settings). Here the bars go to the
local cluster's S3 server (a control plane of its own per size) and the run's outputs too, so no claim holds them;
the operator runs each stage as Jobs (rank in one unit per target group, then its aggregate; select one unit per
target), whose pods the executor starts as processes of this machine with each stage's resources (2 CPUs and a
2 GiB memory limit by default). A stage's wall time is its span in the pipeline's status (its Jobs created → all
Complete); a pod's peak RSS is its process tree's (wait4), which the executor logs when the pod's container ends.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from trainpipe_bench.scale_data import BARS, SIZES, _search, add_run_args, bench_spec, generate, make_command, read_results, write_section
from trainpipe_localcluster.executor import EXIT_LINE

REPO = Path(__file__).resolve().parents[2]
SECTION = "scale-data-operator"
BUCKET = "trainpipe"  # the bucket localcluster/up.sh creates
SECRET = "s3-keys"
MEMORY_LIMIT = "2Gi"  # the goal: every pod within 2 GB at 5M rows
TARGET_GROUPS = 3  # the panels have three targets: rank fans out one unit per target
STAGES = ("rank", "select", "plan", "cpu", "report")


def tools() -> dict[str, Path]:
    """The cached binaries of hack/build-tools.sh (`make cluster-build`), by component."""
    versions = dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines() if "=" in line and not line.startswith("#"))
    root = Path(os.environ.get("TRAINPIPE_TOOLS", Path.home() / ".cache/trainpipe/tools"))
    return {c: root / f"{c}-{versions[f'{c.upper()}_VERSION'].strip()}" for c in ("kubernetes", "etcd", "kwok", "helm")}


def _cluster_script(name: str, state: Path) -> None:
    env = os.environ | {"TRAINPIPE_CLUSTER_DIR": str(state), "VENV": str(Path(sys.executable).parents[1])}
    subprocess.run([str(REPO / "localcluster" / name)], env=env, check=True, stdout=subprocess.DEVNULL)


def upload(store: Any, label: str, seed: int) -> str:
    """The panel on the S3 server under scale-data/<rows>-<seed>/ (each size's server starts empty)."""
    import pyarrow.fs as pafs

    local = generate(label, seed)
    key = f"{BUCKET}/scale-data/{local.name}"
    pafs.copy_files(str(local), key, destination_filesystem=store, use_threads=True)
    return f"s3://{key}"


def pipeline(name: str, uri: str, ns: str, s3: dict[str, str], row_budget: int | None, seed: int, threads: int) -> dict[str, Any]:
    from trainpipe_localcluster import pipeline_manifest

    spec = bench_spec(Path("unused"), row_budget, seed)
    data = {"volume": None, "dir": None, "symbols": None, "uri": uri}
    if row_budget is not None:
        data["rowBudget"] = row_budget
    limits = {"cpu": threads, "memory": MEMORY_LIMIT}
    stages: dict[str, Any] = {stage: {"resources": {"limits": limits}} for stage in STAGES}
    stages["rank"]["targetGroups"] = TARGET_GROUPS
    return pipeline_manifest(
        name, **{k: v for k, v in spec.items() if k != "data"}, data=data, artifacts={"uri": f"s3://{BUCKET}/{ns}/runs"},
        storage={"credentialsSecret": SECRET, "endpoint": s3["AWS_ENDPOINT_URL"], "region": s3.get("AWS_REGION") or "us-east-1"},
        stages=stages,
    )


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def peaks(executor_log: Path, offset: int, ns: str) -> dict[str, tuple[int, int]]:
    """Pod name → (exit code, peak KiB) of the namespace's containers that ended after `offset` in the executor's log."""
    out: dict[str, tuple[int, int]] = {}
    with executor_log.open("rb") as f:
        f.seek(offset)
        for line in f.read().decode(errors="replace").splitlines():
            m = EXIT_LINE.search(line)
            if m and m["ns"] == ns:
                code, kib = int(m["code"]), int(m["kib"])
                old = out.get(m["pod"])
                out[m["pod"]] = (code, max(kib, old[1] if old else 0))
    return out


def run_size(label: str, seed: int, row_budget: int | None, threads: int, timeout: float, state: Path) -> dict[str, Any]:
    from trainpipe_localcluster import CORE, Cluster, Kube, OperatorProcess, pipelines_path
    from trainpipe_localcluster.s3server import cluster_env

    kube = Kube(state / "kubeconfig")
    cluster = Cluster(kubeconfig=state / "kubeconfig", state=state, tools=tools(), kube=kube, started_here=False)
    s3 = cluster_env(state)
    import pyarrow.fs as pafs

    scheme, host = s3["AWS_ENDPOINT_URL"].split("://")
    # Generous timeouts and retries: the upload shares 2 cores with the control plane, and a slow PUT is not a failed one.
    store = pafs.S3FileSystem(access_key=s3["AWS_ACCESS_KEY_ID"], secret_key=s3["AWS_SECRET_ACCESS_KEY"], endpoint_override=host, scheme=scheme,
                              region=s3.get("AWS_REGION") or "us-east-1", connect_timeout=30, request_timeout=120,
                              retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=5))
    uploaded = time.monotonic()
    uri = upload(store, label, seed)
    upload_s = time.monotonic() - uploaded

    ns = f"bench-data-{label.lower().replace('.', '')}-{secrets.token_hex(3)}"
    kube.create(f"{CORE}/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    operator = None
    try:
        kube.create(f"{CORE}/namespaces/{ns}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "type": "Opaque",
            "stringData": {"AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"]}})
        operator_kubeconfig = cluster.install_operator_access(state / "bench-scale-data.kubeconfig")
        operator = OperatorProcess(operator_kubeconfig, state / f"operator-{ns}.log", namespaces=[ns]).start()
        executor_log = state / "executor.log"
        offset = executor_log.stat().st_size
        name = "panel"
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        kube.create(pipelines_path(ns), pipeline(name, uri, ns, s3, row_budget, seed, threads))
        while True:
            status = (kube.get(pipelines_path(ns, name)).get("status") or {})
            if status.get("stage") == "Done":
                break
            stalled = next((c for c in status.get("conditions") or [] if c.get("type") == "Stalled" and c.get("status") == "True"), None)
            if status.get("stage") == "Failed" or stalled:
                raise RuntimeError(f"{ns}/{name} did not finish: {status.get('message') or stalled}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{ns}/{name} not Done after {timeout:.0f}s: stage {status.get('stage')}, {status.get('message')}")
            time.sleep(1.0)
        wall = time.monotonic() - started
        load_after = os.getloadavg()[0]
        time.sleep(1.0)  # the executor logs a container's end just after it reports the pod's phase
        ended = peaks(executor_log, offset, ns)
        pods = kube.get(f"{CORE}/namespaces/{ns}/pods", labelSelector=f"trainpipe.io/pipeline={name}")["items"]
        stage_of = {p["metadata"]["name"]: p["metadata"]["labels"].get("trainpipe.io/stage", "?") for p in pods}
        stages = {}
        for stage, st in (status.get("stages") or {}).items():
            mine = [kib for pod, (_, kib) in ended.items() if stage_of.get(pod) == stage]
            stages[stage] = {"seconds": _seconds(st.get("startedAt"), st.get("finishedAt")), "pods": len(mine),
                             "peak_mb": max(mine) / 1024 if mine else None}
        failed = {pod: code for pod, (code, _) in ended.items() if code != 0}
        ranking = json.loads(store.open_input_file(
            f"{BUCKET}/{ns}/runs/{ns}/{name}/{status['runId']}/ranking/target_rankings.json").readall())
        sample = _search(ranking)
        return {
            "label": label, "rows": SIZES[label] * BARS, "symbols": SIZES[label], "row_budget": row_budget,
            "rows_read": sample["rowsKept"] if sample else SIZES[label] * BARS, "blocks": len(sample["blocks"]) if sample else 0,
            "wall_s": wall, "upload_s": upload_s, "stages": stages, "failed_pods": failed, "load": (load_before, load_after),
            "selected": ranking.get("selected"),
        }
    except Exception:
        # The cluster's folder goes with it: what its logs said goes to the console first.
        for log in (state / f"operator-{ns}.log", state / "executor.log"):
            if log.exists():
                print(f"===== {log} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
        raise
    finally:
        if operator is not None:
            operator.stop()
        kube.delete(f"{CORE}/namespaces/{ns}")


def section(results: list[dict[str, Any]], threads: int, command: str) -> str:
    from trainpipe.contract.pipeline import DataSpec

    default = DataSpec().row_budget
    lines = [
        "## Panels that outgrow one pod, through the operator",
        "",
        f"`{command}` (after the local runs above), on the local cluster: the same generated panels and pipeline as above, as a "
        f"TrainingPipeline on a control plane started for each size, whose bars and outputs are on its S3 server (no claim), rank in {TARGET_GROUPS} target groups (one pod "
        f"each, then the aggregate), select one pod per target; every stage's pods limited to {threads} CPUs and {MEMORY_LIMIT} of memory. "
        "The executor runs each pod as a process of this machine (2 cores shared by the control plane, the S3 server and the pods), "
        "so the memory limit is not enforced: a pod's peak is its process tree's resident set (wait4), measured. Stage seconds are the "
        "stage's span in the pipeline's status (first Job created → last Job Complete, 1 s resolution), pods running side by side "
        "within it; wall is create → Done.",
        "",
        "| rows | symbols | data.rowBudget | rows read | blocks | " + " | ".join(f"{s} s (pods)" for s in STAGES) + " | wall s | "
        + " | ".join(f"{s} peak MiB" for s in STAGES) + " | load avg (start→end) |",
        "| " + " | ".join(["---:"] * (7 + 2 * len(STAGES))) + " |",
    ]
    for r in sorted(results, key=lambda r: (r["rows"], r.get("row_budget") or default)):
        budget = r.get("row_budget") or default
        secs = " | ".join(_stage_seconds(r["stages"].get(s)) for s in STAGES)
        peak = " | ".join(f"{r['stages'][s]['peak_mb']:.0f}" if r["stages"].get(s, {}).get("peak_mb") else "–" for s in STAGES)
        lines.append(f"| {r['rows']:,} | {r['symbols']:,} | {budget:,}{'' if budget == default else ' (not the default)'} | {r['rows_read']:,} | "
                     f"{r['blocks']} | {secs} | {r['wall_s']:.0f} | {peak} | {r['load'][0]:.1f}→{r['load'][1]:.1f} |")
    return "\n".join(lines)


def _stage_seconds(stage: dict[str, Any] | None) -> str:
    if not stage or stage.get("seconds") is None:
        return "–"
    return f"{stage['seconds']:.0f} ({stage['pods']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainpipe_bench.scale_data_operator", description=__doc__.splitlines()[0])
    add_run_args(parser)
    parser.add_argument("--threads", type=int, default=2, help="CPUs each stage's pods are limited to (their threads).")
    parser.add_argument("--timeout", type=float, default=3600.0, help="Seconds one pipeline may take.")
    parser.add_argument("--cluster-dir", type=Path, default=REPO / ".cache" / "scale-data-cluster",
                        help="Where each size's control plane is started and deleted (take down `make cluster-up`'s first: one local cluster at a time).")
    parser.add_argument("--no-write", action="store_true", help="Print the section; leave BENCHMARKS.md alone.")
    args = parser.parse_args(argv)
    if args.from_json:
        write_section(args.out, SECTION, section(read_results(args.from_json), args.threads, "make bench-scale-data"))
        return 0
    state = args.cluster_dir.resolve()
    results = []
    for label in args.sizes:
        # A control plane (and S3 server) per size, started for it and deleted after: the server's volumes hold about
        # 1 GB, and each size starts from the same empty cluster.
        _cluster_script("down.sh", state)  # a stale one from an interrupted run
        _cluster_script("up.sh", state)
        try:
            result = run_size(label, args.seed, args.row_budget, args.threads, args.timeout, state)
        finally:
            _cluster_script("down.sh", state)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    body = section(results, args.threads, make_command(args))
    if args.no_write:
        print(body)
        return 0
    write_section(args.out, SECTION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
