#!/usr/bin/env python3
"""Image benchmarks into BENCHMARKS.md (section `images`): `make bench-images` runs it.

For each image: its size (`docker image inspect` Size), its compressed size (each layer tarred and
gzipped at the default level, which is what `docker push` sends; computed locally, so no registry is
needed), a cold build (the builder cache emptied with `docker builder prune -af`; the wheelhouse and the
base image kept, so the time is the build's and not the download's), a warm build (the same command
again, nothing changed) and the start cost of a pod (the first imports, with and without bytecode). Then
what the GPU image holds: MB on disk per distribution, grouped (TensorFlow's CUDA 12 wheels, Torch's
CUDA 13 ones), and the files two wheels install at the same path.

Usage: hack/images-bench.py [--no-write] [--no-compressed]     (IMAGES="operator jobs-cpu" narrows)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL = ("operator", "jobs-cpu", "jobs-gpu")
MB = 1e6

# Runs inside jobs-gpu: bytes on disk per installed distribution, its version, who requires it, and the
# files two distributions install at the same path (pip keeps the one installed last: a RECORD hash says
# whose copy is on disk). Shared files count for the owner of the copy on disk only.
CONTENTS = r"""
import base64, hashlib, json, os, re, sys
from importlib import metadata
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
owners, versions, requires = {}, {}, {}
for dist in metadata.distributions():
    name = canon(dist.metadata["Name"])
    versions[name] = dist.version
    for f in dist.files or []:
        owners.setdefault(os.path.realpath(dist.locate_file(f)), []).append((name, f.hash.value if f.hash else None))
    for req in dist.requires or []:
        requires.setdefault(canon(re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0]), []).append(name)
def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
sizes, shared = {n: 0 for n in versions}, {}
for path, who in owners.items():
    if not os.path.isfile(path) or os.path.islink(path):
        continue
    size = os.path.getsize(path)
    if len({n for n, _ in who}) == 1:
        sizes[who[0][0]] += size
        continue
    on_disk = digest(path)
    winner = next((n for n, h in who if h == on_disk), "?")
    sizes[winner] = sizes.get(winner, 0) + size
    key = " ".join(sorted({n for n, _ in who}))
    entry = shared.setdefault(key, {"owners": sorted({n for n, _ in who}), "identical": [0, 0], "differ": {}, "largest": (0, "")})
    if len({h for _, h in who}) == 1:
        entry["identical"][0] += 1
        entry["identical"][1] += size
    else:
        entry["differ"].setdefault(winner, [0, 0])
        entry["differ"][winner][0] += 1
        entry["differ"][winner][1] += size
        entry["largest"] = max(entry["largest"], (size, os.path.dirname(path)))
site = next(p for p in sys.path if p.endswith("site-packages"))
top = {}
for entry in os.scandir(site):
    walk = os.walk(entry.path) if entry.is_dir() else [(site, [], [entry.name])]
    top[entry.name] = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in walk for f in fs if not os.path.islink(os.path.join(d, f)))
print(json.dumps({"sizes": sizes, "versions": versions, "requires": requires, "shared": list(shared.values()), "top": top, "site": site}))
"""


# What a stage pod imports before it works: timed in a fresh read-only container (median of 3), the
# cost every pod start pays (the bytecode is in the image; a read-only root cannot cache more).
STARTUP = {
    "operator": "import trainpipe_operator.main, trainpipe_operator.handlers, trainpipe_operator.runtime",
    "jobs-cpu": "import trainpipe.cli.main, pandas, sklearn, lightgbm, xgboost, catboost",
    "jobs-gpu": "import trainpipe.cli.main, tensorflow, torch",
}


def startup_seconds(image: str, name: str, bytecode: bool = True) -> float:
    """Median of 3. bytecode=False: Python looks for bytecode under an empty PYTHONPYCACHEPREFIX, i.e. it
    compiles every module it imports, as in an image without bytecode on a read-only root."""
    env = [] if bytecode else ["-e", "PYTHONPYCACHEPREFIX=/tmp/no-bytecode"]
    times = []
    for _ in range(3):
        start = time.monotonic()
        docker("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", "-u", "10001", *env,
               "--entrypoint", "python", image, "-c", STARTUP[name])
        times.append(time.monotonic() - start)
    return sorted(times)[1]


def engine() -> dict[str, str]:
    out = subprocess.run([ROOT / "hack/engine.sh", "start", "--holder", str(os.getpid())], check=True, capture_output=True, text=True).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))
    os.environ.update(env)
    return env


def docker(*args: str, capture: bool = True) -> str:
    return subprocess.run([os.environ["DOCKER"], *args], check=True, capture_output=capture, text=True).stdout.strip()


def app_version() -> str:
    """The chart's appVersion: the tag hack/images.sh gives the images."""
    for line in (ROOT / "helm/trainpipe/Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise SystemExit("appVersion missing in helm/trainpipe/Chart.yaml")


def build(names: list[str]) -> dict[str, float]:
    times = {}
    for name in names:
        start = time.monotonic()
        subprocess.run([ROOT / "hack/images.sh", "build", name], check=True, cwd=ROOT)
        times[name] = time.monotonic() - start
    return times


class _GzipCounter:
    """A write-only file that gzips what it is given at the default level and counts the bytes out."""

    def __init__(self) -> None:
        self.gz, self.total = zlib.compressobj(6, zlib.DEFLATED, 31), 0

    def write(self, data: bytes) -> int:
        self.total += len(self.gz.compress(data))
        return len(data)

    def close(self) -> int:
        self.total += len(self.gz.flush())
        return self.total


def compressed_bytes(image: str) -> int:
    """Sum over the image's layers of their gzip size at the default level (what a push uploads).

    With overlay2 on this machine each layer is a folder (GraphDriver data): it is tarred and gzipped from
    there, needing no disk. Otherwise `docker save`, which first exports the whole image to the daemon's
    temporary folder (12 GB for jobs-gpu)."""
    data = json.loads(docker("image", "inspect", "--format", "{{json .GraphDriver}}", image))
    dirs = [d for d in [data["Data"].get("UpperDir", ""), *data["Data"].get("LowerDir", "").split(":")] if d]
    if data["Name"] == "overlay2" and dirs and all(os.access(d, os.R_OK) for d in dirs):
        total = 0
        for layer in dirs:
            sink = _GzipCounter()
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for entry in sorted(os.listdir(layer)):
                    tar.add(os.path.join(layer, entry), arcname=entry)
            total += sink.close()
        return total
    proc = subprocess.Popen([os.environ["DOCKER"], "save", image], stdout=subprocess.PIPE)
    total = 0
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            f = tar.extractfile(member) if member.isfile() and member.name.endswith("layer.tar") else None
            if f is not None:
                sink = _GzipCounter()
                while chunk := f.read(1 << 20):
                    sink.write(chunk)
                total += sink.close()
    if proc.wait() != 0:
        raise RuntimeError(f"docker save {image} failed")
    return total


def gpu_contents(image: str) -> dict:
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", CONTENTS)
    return json.loads(out)


def cuda_group(name: str) -> str:
    if name.endswith("-cu12"):
        return "CUDA 12 wheels (TensorFlow's [and-cuda]; nvidia-nccl-cu12 also XGBoost's)"
    if name.startswith(("nvidia-", "cuda-")):
        return "CUDA 13 wheels (Torch's, through cuda-toolkit)"
    if name in {"tensorflow", "keras", "tensorboard", "ml-dtypes", "h5py", "libclang", "grpcio"}:
        return "TensorFlow and Keras"
    if name in {"torch", "triton", "sympy", "mpmath", "networkx"}:
        return "Torch (with Triton and SymPy)"
    return "everything else (jobs, CPU families, the project)"


def gpu_section(contents: dict) -> list[str]:
    sizes, versions, requires = contents["sizes"], contents["versions"], contents["requires"]
    groups: dict[str, int] = {}
    for name, size in sizes.items():
        groups[cuda_group(name)] = groups.get(cuda_group(name), 0) + size
    lines = ["### What jobs-gpu holds (its virtualenv, by installed distribution; bytes on disk)", "",
             "| group | MB |", "| --- | ---: |"]
    lines += [f"| {g} | {s / MB:,.0f} |" for g, s in sorted(groups.items(), key=lambda kv: -kv[1])]
    lines += [f"| **virtualenv total** | **{sum(sizes.values()) / MB:,.0f}** |", ""]

    def who(name: str) -> str:
        return ", ".join(sorted(set(requires.get(name, [])))) or "–"

    # The same CUDA library from both toolkits: nvidia-X-cu12 (TensorFlow) beside nvidia-X / nvidia-X-cu13 (Torch).
    rows, paired = [], set()
    for name in sorted(n for n in sizes if n.startswith("nvidia-") and n.endswith("-cu12")):
        stem = name.removesuffix("-cu12")
        twin = next((t for t in (stem, stem + "-cu13") if t in sizes), None)
        paired |= {name, twin}
        rows.append((stem.removeprefix("nvidia-"), name, twin))
    lines += ["CUDA libraries by toolkit (MB on disk, version; required by):", "",
              "| library | CUDA 12 | | CUDA 13 | |", "| --- | ---: | --- | ---: | --- |"]
    for lib, a, b in sorted(rows, key=lambda r: -sizes[r[1]]):
        right = f"| {sizes[b] / MB:,.0f} | {versions[b]}; {who(b)} |" if b else "| 0 | not installed |"
        lines.append(f"| {lib} | {sizes[a] / MB:,.0f} | {versions[a]}; {who(a)} " + right)
    only13 = sorted((n for n in sizes if n.startswith(("nvidia-", "cuda-")) and n not in paired), key=lambda n: -sizes[n])
    lines += ["", "Only in CUDA 13 (Torch): " + ", ".join(f"{n} {sizes[n] / MB:,.0f}" for n in only13) + " MB."]
    if contents["shared"]:
        site = contents["site"].rstrip("/") + "/"
        lines += ["", "**Files that two wheels install at the same path** (pip keeps the copy of the one it installs last; "
                  "the RECORD hashes say whose is on disk). Whatever loads these gets that build, whichever framework asks:", ""]
        for s in sorted(contents["shared"], key=lambda s: -sum(b for _, b in s["differ"].values())):
            owners = " and ".join(f"{o} {versions.get(o, '?')}" for o in s["owners"])
            differ = "; ".join(f"{n} files, {b / MB:,.0f} MB from {w}" for w, (n, b) in s["differ"].items()) or "none"
            where = s["largest"][1].removeprefix(site) or "(identical files only)"
            lines.append(f"- {owners}: both write `{where}` and more. Differing files on disk: {differ}; "
                         f"identical in both: {s['identical'][0]} files, {s['identical'][1] / MB:,.0f} MB.")
    top = sorted(contents["top"].items(), key=lambda kv: -kv[1])[:12]
    lines += ["", "Largest top-level entries of site-packages (MB): " + ", ".join(f"`{n}` {s / MB:,.0f}" for n, s in top) + "."]
    return lines


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))) / 2**20
    info = docker("info", "--format", "Docker Engine {{.ServerVersion}}, storage driver {{.Driver}}")
    return f"{os.cpu_count()} × {cpu}, {mem:.0f} GiB; {info}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    parser.add_argument("--no-compressed", action="store_true", help="skip the compressed sizes (docker save + gzip of every layer)")
    args = parser.parse_args()
    names = [n for n in ALL if n in os.environ.get("IMAGES", " ".join(ALL)).split()]
    engine()
    try:
        print("bench-images: the base images and the wheelhouse first, so the builds below neither debootstrap nor download", file=sys.stderr)
        for name in names:
            dockerfile = ROOT / "images" / name / "Dockerfile"
            subprocess.run([ROOT / "hack/base-image.sh", dockerfile], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            locks = re.search(r"^COPY (locks/.*) locks/$", dockerfile.read_text(), re.M)
            if locks:
                subprocess.run([ROOT / "hack/wheels.sh", *locks.group(1).split()], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        version = app_version()
        tags = {n: f"trainpipe/{n}:{version}" for n in names}
        # The images stay tagged (other users may be pushing them): without its cache BuildKit runs every
        # step again anyway. The images the new builds replace are removed after.
        print("bench-images: cold: docker builder prune -af", file=sys.stderr)
        docker("builder", "prune", "-af")
        cold = build(names)
        docker("image", "prune", "-f")
        print("bench-images: warm: the same builds again", file=sys.stderr)
        warm = build(names)
        size = {n: int(docker("image", "inspect", "--format", "{{.Size}}", t)) for n, t in tags.items()}
        layers = {n: len(json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", t))) for n, t in tags.items()}
        print(f"bench-images: cold {cold}, warm {warm}, size {size}", file=sys.stderr)
        startup = {n: startup_seconds(t, n) for n, t in tags.items()}
        compiling = {n: startup_seconds(t, n, bytecode=False) for n, t in tags.items()}
        print(f"bench-images: start {startup}, without bytecode {compiling}", file=sys.stderr)
        packed = {} if args.no_compressed else {n: compressed_bytes(t) for n, t in tags.items()}
        print(f"bench-images: compressed {packed}", file=sys.stderr)
        contents = gpu_contents(tags["jobs-gpu"]) if "jobs-gpu" in tags else None
    finally:
        subprocess.run([ROOT / "hack/engine.sh", "stop", "--holder", str(os.getpid())], check=False)

    revision = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [
        f"## Images (`make images`: {', '.join(names)})",
        "",
        f"Command: `make bench-images` (`hack/images-bench.py`), {dt.date.today().isoformat()}, revision {revision}; {machine()}.",
        "Cold: builder cache emptied (`docker builder prune -af`), wheelhouse and base image kept "
        "(so no wheel is downloaded; the final stage's `apt-get install` does reach Debian's mirror). "
        "Warm: the same command again, nothing changed. Times are `hack/images.sh build NAME` end to end.",
        "",
        "| image | size MB | compressed MB | layers | cold build s | warm build s | start s | start without bytecode s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in names:
        gz = f"{packed[n] / MB:,.0f}" if n in packed else "–"
        lines.append(f"| {tags[n]} | {size[n] / MB:,.0f} | {gz} | {layers[n]} | {cold[n]:.0f} | {warm[n]:.0f} | {startup[n]:.1f} | {compiling[n]:.1f} |")
    lines += ["", "Size: `docker image inspect` Size (uncompressed, base included). Compressed: each layer tarred and gzipped at the "
              "default level, as `docker push` sends it (computed locally; no registry needed). Start: `docker run --read-only` of "
              "`python -c '<the imports a stage pod makes first>'` (median of 3); without bytecode: the same with "
              "`PYTHONPYCACHEPREFIX` pointing at an empty folder, so every imported module is compiled, which is what a pod "
              "of an image without bytecode pays at each start (the jobs images compile theirs at build time; the operator's "
              "does not, it starts once): "
              + "; ".join(f"{n}: `{STARTUP[n]}`" for n in names) + "."]
    if contents:
        lines += [""] + gpu_section(contents)
    section = "\n".join(lines)
    if args.no_write:
        print(section)
    else:
        subprocess.run([sys.executable, ROOT / "hack/write-section.py", ROOT / "BENCHMARKS.md", "images"], input=section, text=True, check=True)
        print("bench-images: BENCHMARKS.md section `images` written", file=sys.stderr)
    print(f"bench-images: {shlex.join(sys.argv)} done", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
