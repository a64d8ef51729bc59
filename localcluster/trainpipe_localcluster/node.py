"""The local cluster's real node (a kubelet with containerd on this machine): its facts, its status, images for it.

The facts (name, pool label, taint, addresses) live in localcluster/config/node.env, which the shell
scripts source too; `REAL_NODE` holds them here. localcluster/node/up.sh writes whether the node came
up, or why not, to `<cluster state>/node/status`; `status()` reads it for tests and tools. The node
pulls from the local registry (`<cluster state>/registry` holds its address); `push_image` puts an
image there with the plain registry API (up.sh pushes the pause image with it, tests push theirs).

    python -m trainpipe_localcluster.node status --state-dir .cache/cluster    # up, or why not (exit 1)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from trainpipe_localcluster.repo import LOCALCLUSTER

NODE_ENV = LOCALCLUSTER / "config" / "node.env"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a shell-sourceable file (comments and blank lines skipped, no quoting)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@dataclass(frozen=True)
class RealNode:
    """What pods and tests need to know about the real node (localcluster/config/node.env)."""

    name: str
    pool_label: str
    pool: str
    taint_key: str
    taint_value: str
    taint_effect: str
    ip: str
    link: str
    bridge: str
    pod_cidr: str
    cgroup: str
    pause_repository: str

    @classmethod
    def from_env(cls, path: Path = NODE_ENV) -> RealNode:
        env = read_env_file(path)
        return cls(**{field: env[f"REAL_NODE_{field.upper()}"] for field in cls.__dataclass_fields__})

    @property
    def node_selector(self) -> dict[str, str]:
        return {self.pool_label: self.pool}

    @property
    def toleration(self) -> dict[str, str]:
        return {"key": self.taint_key, "operator": "Equal", "value": self.taint_value, "effect": self.taint_effect}

    def placement(self) -> dict[str, Any]:
        """Pod spec fields that put a pod on the real node (and only there): selector and toleration."""
        return {"nodeSelector": dict(self.node_selector), "tolerations": [dict(self.toleration)]}


REAL_NODE = RealNode.from_env()


@dataclass(frozen=True)
class NodeStatus:
    """What localcluster/node/up.sh recorded: `up`, or the reason the cluster runs without the node."""

    up: bool
    state: str  # up | unavailable (the machine cannot run it) | failed (it did not start) | off | unknown
    reason: str
    seconds: float | None = None  # how long the start took, when it is up


def status(state_dir: Path) -> NodeStatus:
    """Whether the real node of the cluster in `state_dir` is up, or why not, as plainly as up.sh said it."""
    path = state_dir / "node" / "status"
    try:
        fields = read_env_file(path)
    except OSError:
        return NodeStatus(False, "unknown", f"no {path}: the cluster was not started by localcluster/up.sh "
                                            "of this checkout, or is down")
    state, reason = fields.get("state", "unknown"), fields.get("reason", "")
    if state != "up":
        return NodeStatus(False, state, reason or f"{path} says {state}")
    for daemon in ("kubelet", "containerd"):
        pidfile = state_dir / "node" / f"{daemon}.pid"
        if not _alive(pidfile):
            return NodeStatus(False, "failed", f"{daemon} is not running any more (pidfile {pidfile}); its log is "
                                               f"{state_dir / 'node' / (daemon + '.log')}")
    seconds = fields.get("seconds")
    return NodeStatus(True, state, reason, float(seconds) if seconds else None)


@dataclass(frozen=True)
class StoppedKubelet:
    """How the real node's kubelet ran (its argv and environment), to start it again as it was."""

    argv: tuple[str, ...]
    env: dict[str, str]


def kill_kubelet(state_dir: Path, timeout: float = 10.0) -> StoppedKubelet:
    """SIGKILL the real node's kubelet: a node lost without a word. Its containers run on under containerd
    (as on a node cut off from the network), its Lease and status stop being renewed."""
    pidfile = state_dir / "node" / "kubelet.pid"
    pid = int(pidfile.read_text().strip())
    argv = tuple(a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a)
    env = dict(e.decode().split("=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in e)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while _alive(pidfile) and time.monotonic() < deadline:
        time.sleep(0.1)
    return StoppedKubelet(argv, env)


def start_kubelet(state_dir: Path, stopped: StoppedKubelet) -> int:
    """Start the kubelet `kill_kubelet` stopped, as localcluster/node/up.sh did (own session, its log appended); its pid."""
    node = state_dir / "node"
    with (node / "kubelet.log").open("ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(list(stopped.argv), env=stopped.env, stdout=log, stderr=subprocess.STDOUT, stdin=devnull,
                                start_new_session=True)
    (node / "kubelet.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def registry_address(state_dir: Path) -> str:
    """`127.0.0.1:PORT` of the cluster's registry (what `make images-push` pushes to by default)."""
    return (state_dir / "registry").read_text().strip()


# -- images ------------------------------------------------------------------------------------------
def tar_layer(entries: list[tarfile.TarInfo], contents: dict[str, bytes]) -> bytes:
    """An uncompressed layer tar of `entries` (contents by entry name for regular files), reproducible."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            entry.mtime, entry.uname, entry.gname = 0, "", ""
            data = contents.get(entry.name)
            if data is not None:
                entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def file_entry(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name.lstrip("/"))
    entry.mode = mode
    return entry


def dir_entry(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name.lstrip("/"))
    entry.type, entry.mode = tarfile.DIRTYPE, mode
    return entry


def symlink_entry(name: str, target: str) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name.lstrip("/"))
    entry.type, entry.linkname, entry.mode = tarfile.SYMTYPE, target, 0o777
    return entry


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _call(method: str, url: str, data: bytes | None = None, content_type: str | None = None,
          expect: tuple[int, ...] = (200, 201, 202)) -> tuple[int, Message]:
    """One registry API call: (status, headers); a status outside `expect` raises with the body."""
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": content_type} if content_type else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 -- our registry, on loopback
            code, headers = resp.status, resp.headers
    except urllib.error.HTTPError as err:
        code, headers, body = err.code, err.headers, err.read()[:500].decode(errors="replace")
        if code not in expect:
            raise RuntimeError(f"{method} {url} -> {code}: {body}") from None
    return code, headers


def push_image(registry: str, repository: str, tag: str, layers: list[bytes],
               config: dict[str, Any] | None = None) -> str:
    """Push an image of uncompressed layer tars (base first) to `registry` (host:port, plain HTTP).

    `config` is the image's runtime config (Entrypoint, Cmd, Env, User, WorkingDir). Layers are
    gzipped reproducibly, so pushing the same image twice uploads nothing new. Returns the
    manifest's digest; the image is then `{registry}/{repository}:{tag}`.
    """
    base = f"http://{registry}/v2/{repository}"
    image_config = {
        "architecture": "amd64", "os": "linux", "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer) for layer in layers]},
    }
    blobs = [(gzip.compress(layer, mtime=0), OCI_LAYER_GZIP) for layer in layers]
    config_blob = json.dumps(image_config, sort_keys=True).encode()
    for data, _ in [*blobs, (config_blob, OCI_CONFIG)]:
        digest = _digest(data)
        if _call("HEAD", f"{base}/blobs/{digest}", expect=(200, 404))[0] == 200:
            continue  # already there
        _, headers = _call("POST", f"{base}/blobs/uploads/")
        location = headers["Location"]
        if location.startswith("/"):
            location = f"http://{registry}{location}"
        separator = "&" if "?" in location else "?"
        _call("PUT", f"{location}{separator}digest={digest}", data, "application/octet-stream")
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _digest(config_blob), "size": len(config_blob)},
        "layers": [{"mediaType": media, "digest": _digest(data), "size": len(data)} for data, media in blobs],
    }
    body = json.dumps(manifest, sort_keys=True).encode()
    _call("PUT", f"{base}/manifests/{tag}", body, OCI_MANIFEST)
    return _digest(body)


def push_pause(registry: str, binary: Path, tag: str, node: RealNode = REAL_NODE) -> str:
    """Push our pause (hack/tools/pause) as the sandbox image containerd runs for every pod; returns its ref."""
    layer = tar_layer([file_entry("pause", 0o755)], {"pause": binary.read_bytes()})
    push_image(registry, node.pause_repository, tag, [layer],
               {"Entrypoint": ["/pause"], "User": "65535:65535"})
    return f"{registry}/{node.pause_repository}:{tag}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("status", help="print whether the real node is up, or why not (exit 1 when not up)")
    show.add_argument("--state-dir", type=Path, required=True, help="the cluster's state folder (.cache/cluster)")
    pause = sub.add_parser("push-pause", help="push the pause binary as the sandbox image; prints its ref")
    pause.add_argument("--registry", required=True, help="127.0.0.1:PORT")
    pause.add_argument("--binary", type=Path, required=True)
    pause.add_argument("--tag", required=True)
    args = parser.parse_args(argv)
    if args.command == "status":
        st = status(args.state_dir)
        took = f" (started in {st.seconds:.1f}s)" if st.seconds is not None else ""
        print(f"{REAL_NODE.name}: up{took}" if st.up else f"{REAL_NODE.name}: {st.state}: {st.reason}")
        return 0 if st.up else 1
    start = time.monotonic()
    try:
        ref = push_pause(args.registry, args.binary, args.tag)
    except (OSError, RuntimeError) as err:  # unreachable registry, refused upload, unreadable binary
        print(f"cannot push the pause image to {args.registry}: {err}", file=sys.stderr)
        return 1
    print(ref)
    print(f"pushed {ref} in {time.monotonic() - start:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
