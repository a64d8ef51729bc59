"""The local S3-compatible object store (SeaweedFS `weed server -s3`): start, wait, make buckets, stop.

Used by the e2e tier's `s3_server` fixture (tests/e2e/conftest.py) and by localcluster/up.sh through
`python -m trainpipe_localcluster.s3server start`, which writes the endpoint and the generated
credentials to a file the cluster tests read. The binary comes from hack/build-tools.sh (component
`seaweedfs`, built from Go modules and cached per version).

Every SeaweedFS part (master, volume, filer, S3 gateway) gets its own free port, HTTP and gRPC, so a
second clone's server or a developer's never collides with this one; their data, sockets and logs
all live under one folder, and the S3 config holds one identity with credentials generated here.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from trainpipe_localcluster.repo import HACK

REGION = "us-east-1"
# The ports `weed server` opens: each part's HTTP port and its gRPC port (given explicitly: weed's
# default, HTTP + 10000, may be taken or above 65535).
_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
          "s3.port", "s3.port.grpc")
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class S3Server:
    """A running server: where it answers and the one identity it accepts."""

    endpoint: str  # http://HOST:PORT
    access_key: str
    secret_key: str
    pid: int
    folder: Path
    region: str = REGION

    def env(self) -> dict[str, str]:
        """The standard AWS variables a client (pyarrow, the trainpipe CLI) reads to reach this server."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": self.region}


def weed_binary() -> Path:
    """`weed`, built (or found cached) by hack/build-tools.sh: a cold build takes minutes, a cached one none."""
    subprocess.run(["bash", str(HACK / "build-tools.sh"), "seaweedfs"], check=True)
    tool_dir = subprocess.run(["bash", str(HACK / "build-tools.sh"), "--dir", "seaweedfs"], check=True,
                              capture_output=True, text=True).stdout.strip()
    return Path(tool_dir) / "bin" / "weed"


def free_ports(host: str, count: int) -> list[int]:
    """`count` distinct ports nothing listens on at `host` right now (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def identities(access_key: str, secret_key: str) -> dict:
    """SeaweedFS's S3 config: one identity allowed everything (the tests' and pods' only user)."""
    return {"identities": [{"name": "trainpipe", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}


def command(weed: Path, folder: Path, host: str, ports: dict[str, int], config: Path) -> list[str]:
    """The `weed server` command line: S3 on, telemetry off, the optional catalogue servers off, sockets in `folder`."""
    args = [str(weed), "server", f"-dir={folder / 'data'}", f"-ip={host}", f"-ip.bind={host}", "-filer", "-s3",
            f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            # A PUT into a missing bucket must fail as on any cloud store, not create the bucket.
            "-s3.autoCreateBucket=false", "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=16",
            f"-filer.localSocket={folder / 'filer.sock'}", f"-s3.localSocket={folder / 's3.sock'}"]
    args += [f"-{name}={port}" for name, port in ports.items()]
    return args


def answers(endpoint: str) -> bool:
    """True once the S3 gateway answers HTTP at all (403 to an anonymous request counts: it is up)."""
    try:
        urllib.request.urlopen(endpoint + "/", timeout=2)  # noqa: S310 -- our own server, plain HTTP by design
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def make_buckets(server: S3Server, buckets: list[str]) -> None:
    """Create each bucket (existing ones are fine) with pyarrow's S3 client, as the pipeline will talk to it."""
    from pyarrow import fs

    s3 = fs.S3FileSystem(access_key=server.access_key, secret_key=server.secret_key, endpoint_override=server.endpoint,
                         region=server.region, allow_bucket_creation=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    for bucket in buckets:
        while True:
            try:
                s3.create_dir(bucket)
                break
            except OSError:
                # The gateway answers before the filer has a writable volume; retry until the deadline.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def start(folder: Path, host: str = "127.0.0.1", buckets: list[str] | None = None, weed: Path | None = None) -> S3Server:
    """Start a server with its data under `folder`, listening on `host`; returns once `buckets` exist."""
    weed = weed or weed_binary()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    access_key, secret_key = "tp" + secrets.token_hex(8), secrets.token_hex(20)
    config = folder / "s3-identities.json"
    config.write_text(json.dumps(identities(access_key, secret_key)))
    config.chmod(0o600)
    ports = dict(zip(_PORTS, free_ports(host, len(_PORTS)), strict=True))
    # What `stop` cleans up after: weed puts a gRPC socket per part in /tmp, named by port (no flag moves them).
    (folder / "ports.json").write_text(json.dumps(ports))
    log = (folder / "weed.log").open("ab")
    # A session of its own: it outlives the starting shell (up.sh) and is stopped by its pid.
    proc = subprocess.Popen(command(weed, folder, host, ports, config), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=folder)
    log.close()
    server = S3Server(f"http://{host}:{ports['s3.port']}", access_key, secret_key, proc.pid, folder)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(server.endpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(server)
            tail = (folder / "weed.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"SeaweedFS did not answer on {server.endpoint} within {START_TIMEOUT_S:.0f}s; "
                               f"{folder / 'weed.log'} ends with:\n{tail}")
        time.sleep(0.2)
    try:
        make_buckets(server, buckets or [])
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: S3Server | int, folder: Path | None = None, timeout_s: float = 5.0) -> None:
    """TERM the server's process group (weed and anything it started), KILL after `timeout_s`, then remove the
    gRPC sockets weed left in /tmp (listed in `folder`/ports.json); idempotent.

    A short grace: weed's graceful shutdown waits on its own peers' streams for 15 s and more, and a test or
    cluster store is thrown away with its folder anyway.
    """
    pid = server if isinstance(server, int) else server.pid
    folder = folder if folder is not None or isinstance(server, int) else server.folder
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    else:
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while _alive(pid):
                time.sleep(0.05)
    if folder is not None and (folder / "ports.json").exists():
        ports = json.loads((folder / "ports.json").read_text())
        for part in ("master", "volume", "filer", "s3"):
            Path(f"/tmp/seaweedfs-{part}-grpc-{ports[f'{part}.port.grpc']}.sock").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """True while `pid` runs; reaps it when it is our child, so a zombie does not count as alive."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child (started by an earlier `start` command): signal 0 tells
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def write_env_file(server: S3Server, path: Path) -> None:
    """KEY=VALUE lines (the AWS variables), mode 0600: the cluster tests and `make` targets source it."""
    path.write_text("".join(f"{k}={v}\n" for k, v in server.env().items()))
    path.chmod(0o600)


def cluster_env(state_dir: Path) -> dict[str, str]:
    """The AWS_* variables of the local cluster's S3 server (`<cluster state>/s3.env`, written by localcluster/up.sh)."""
    lines = (state_dir / "s3.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainpipe_localcluster.s3server", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("start", help="start a server; write its pid and its AWS_* variables")
    up.add_argument("--dir", type=Path, required=True, help="data, config, sockets and log folder")
    up.add_argument("--host", default="127.0.0.1", help="the address it listens on (pods must reach it)")
    up.add_argument("--bucket", action="append", default=[], help="a bucket to create (repeatable)")
    up.add_argument("--weed", type=Path, help="the weed binary (default: hack/build-tools.sh's)")
    up.add_argument("--pidfile", type=Path, required=True)
    up.add_argument("--env-file", type=Path, required=True, help="where AWS_ENDPOINT_URL and the credentials go")
    down = sub.add_parser("stop", help="stop the server a pidfile names")
    down.add_argument("--pidfile", type=Path, required=True)
    down.add_argument("--dir", type=Path, help="the server's folder: its /tmp sockets are removed too")
    args = parser.parse_args(argv)
    if args.cmd == "start":
        server = start(args.dir, args.host, args.bucket, args.weed)
        args.pidfile.write_text(f"{server.pid}\n")
        write_env_file(server, args.env_file)
        print(server.endpoint)
        return 0
    if args.pidfile.exists():
        stop(int(args.pidfile.read_text().strip()), args.dir)
        args.pidfile.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
