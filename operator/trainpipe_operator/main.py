"""`trainpipe-operator`: flags, the HTTP endpoints (metrics, liveness, readiness) and kopf in standalone mode."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from trainpipe.kube.client import Kube, load_client
from trainpipe_operator.config import ConfigError, OperatorConfig, parse_selector, parse_toleration
from trainpipe_operator.health import WatchHealth
from trainpipe_operator.metrics import Metrics
from trainpipe_operator.pacing import StatusPacing
from trainpipe_operator.ratelimit import TokenBucket
from trainpipe_operator.runtime import Reconciler

log = logging.getLogger("trainpipe.operator")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trainpipe-operator", description="Runs TrainingPipelines as Kubernetes Jobs: rank → select → plan → cpu → gpu → report.")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="Kubeconfig to use (default: $KUBECONFIG, else the pod's ServiceAccount).")
    p.add_argument("--namespace", action="append", default=[], metavar="NS", help="Serve this namespace (repeatable); none = every namespace.")
    p.add_argument("--cpu-image", default=os.environ.get("TRAINPIPE_CPU_IMAGE"), help="Default image of rank/select/plan/cpu/report Jobs [$TRAINPIPE_CPU_IMAGE].")
    p.add_argument("--gpu-image", default=os.environ.get("TRAINPIPE_GPU_IMAGE"), help="Default image of GPU Jobs [$TRAINPIPE_GPU_IMAGE].")
    p.add_argument("--cpu-node-selector", action="append", default=[], metavar="KEY=VALUE",
                   help="Node selector of rank/select/plan/cpu/report Jobs whose stage sets none (repeatable).")
    p.add_argument("--gpu-node-selector", action="append", default=[], metavar="KEY=VALUE",
                   help="Node selector of GPU Jobs whose stage sets none (repeatable).")
    p.add_argument("--cpu-toleration", action="append", default=[], metavar="JSON",
                   help='A toleration added to every rank/select/plan/cpu/report Job, e.g. \'{"key":"pool","operator":"Equal","value":"batch","effect":"NoSchedule"}\' (repeatable).')
    p.add_argument("--gpu-toleration", action="append", default=[], metavar="JSON",
                   help='A toleration added to every GPU Job, e.g. \'{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}\' (repeatable).')
    p.add_argument("--job-service-account", default=None, metavar="NAME", help="ServiceAccount of the Jobs' pods when a pipeline names none.")
    p.add_argument("--api-qps", type=float, default=None, help="Sustained API requests per second (token bucket); unset = unlimited.")
    p.add_argument("--api-burst", type=int, default=None, help="Requests allowed in a burst above --api-qps (default: 2 × qps).")
    p.add_argument("--port", type=int, default=int(os.environ.get("TRAINPIPE_OPERATOR_PORT", "8080")), help="HTTP port of /metrics, /healthz and /readyz.")
    p.add_argument("--resync-seconds", type=float, default=30.0, help="Every pipeline is reconciled at least this often, events or not.")
    p.add_argument("--workers", type=int, default=4, help="Pipelines reconciled at the same time.")
    p.add_argument("--event-batch-seconds", type=float, default=0.25,
                   help="A pipeline's pass waits this long after a watch event, folding the events that follow into it.")
    p.add_argument("--status-progress-seconds", type=float, default=10.0,
                   help="A status change that only moves running unit counts is written at most this often per pipeline (stage changes at once).")
    p.add_argument("--status-progress-rate", type=float, default=1.0,
                   help="Such count-only writes per second across all running pipelines: with more running than this × "
                        "--status-progress-seconds, each pipeline's counts wait longer (0: no cap).")
    p.add_argument("--stall-seconds", type=float, default=180.0, help="Liveness fails when the watch lags a fresh LIST for this long.")
    p.add_argument("--log-level", default=os.environ.get("TRAINPIPE_LOG_LEVEL", "INFO"))
    return p


def http_app(reconciler: Reconciler, ready: asyncio.Event) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(reconciler.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        stalled = reconciler.health.stalled(asyncio.get_running_loop().time())
        if stalled:
            names = ", ".join(f"{ns}/{name}" for ns, name in stalled[:5])
            return web.Response(status=500, text=f"watch stalled: a LIST shows changes to {names} that no watch event delivered\n")
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready.is_set() and reconciler.resync.resynced.is_set() and reconciler.logged_in.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting: watches or the first resync are not up yet\n")

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)])
    return app


async def serve(args: argparse.Namespace) -> None:
    import kopf

    from trainpipe_operator.handlers import build_registry

    namespaces = tuple(args.namespace)
    config = config_from(args)
    limiter = limiter_from(args)
    reconciler = Reconciler(kube=Kube(load_client(args.kubeconfig, in_cluster=True), limiter), config=config, metrics=Metrics(),
                            health=WatchHealth(grace_seconds=args.stall_seconds), namespaces=namespaces, workers=args.workers,
                            pacing=StatusPacing(args.status_progress_seconds, args.status_progress_rate),
                            batch_seconds=args.event_batch_seconds)
    ready, stop = asyncio.Event(), asyncio.Event()
    runner = web.AppRunner(http_app(reconciler, ready), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host=os.environ.get("TRAINPIPE_OPERATOR_HOST", "0.0.0.0"), port=args.port).start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    work = asyncio.create_task(reconciler.run(args.resync_seconds))
    log.info("trainpipe-operator serving %s on :%d", ", ".join(namespaces) or "all namespaces", args.port)
    kw: dict[str, Any] = {"namespaces": namespaces} if namespaces else {"clusterwide": True}
    try:
        await kopf.operator(registry=build_registry(reconciler), standalone=True, ready_flag=ready, stop_flag=stop, **kw)
    finally:
        work.cancel()
        await runner.cleanup()


def config_from(args: argparse.Namespace) -> OperatorConfig:
    return OperatorConfig(
        cpu_image=args.cpu_image, gpu_image=args.gpu_image, resync_seconds=args.resync_seconds,
        cpu_node_selector=parse_selector("--cpu-node-selector", args.cpu_node_selector),
        gpu_node_selector=parse_selector("--gpu-node-selector", args.gpu_node_selector),
        cpu_tolerations=tuple(parse_toleration("--cpu-toleration", t) for t in args.cpu_toleration),
        gpu_tolerations=tuple(parse_toleration("--gpu-toleration", t) for t in args.gpu_toleration),
        job_service_account=args.job_service_account,
    )


def limiter_from(args: argparse.Namespace) -> TokenBucket | None:
    """The API rate limit of --api-qps/--api-burst (burst defaults to twice the rate); None = unlimited."""
    if args.api_qps is None and args.api_burst is None:
        return None
    qps = args.api_qps or 0.0
    return TokenBucket(qps, args.api_burst or max(1, int(2 * qps)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config_from(args)  # a bad flag stops here with its name, before anything connects
        limiter_from(args)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # kopf logs every handled watch event at INFO; our handlers only wake the queue, so keep its warnings only.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0
