"""Wall time of `trainpipe run` (rank + select + plan + CPU training + report) with the bars and the outputs on a real S3
server (SeaweedFS on loopback, as the e2e and cluster tiers start it) beside the same run on local folders:
`python -m trainpipe_bench.object_storage --data-dir data/example`.

Variants alternate, one at a time, each run in a fresh output prefix (and a fresh staging folder for the store), so
nothing is cached and a noisy machine slows both alike; the table gives medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.fs as pafs

BUCKET = "bench"
# Three CPU families on every symbol: the training stage reads the bars once per family worker.
ARGS = ("run", "--auto-targets", "--auto-features", "--families", "lightgbm", "xgboost", "catboost")


def _store(server) -> pafs.S3FileSystem:
    scheme, host = server.endpoint.split("://")
    return pafs.S3FileSystem(access_key=server.access_key, secret_key=server.secret_key, endpoint_override=host, scheme=scheme,
                             region=server.region)


def _run(data: str, out: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "trainpipe.cli.main", *ARGS, "--data-dir", data, "--output-dir", out],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"trainpipe run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from trainpipe_localcluster import s3server

    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        root = Path(tmp)
        server = s3server.start(root / "s3", buckets=[BUCKET])
        try:
            pafs.copy_files(str(args.data_dir.resolve()), f"{BUCKET}/bars", destination_filesystem=_store(server))
            times: dict[str, list[float]] = {"local folder": [], "S3 server": []}
            for i in range(args.repeats):
                order = ("local folder", "S3 server") if i % 2 == 0 else ("S3 server", "local folder")
                for variant in order:
                    if variant == "local folder":
                        seconds = _run(str(args.data_dir.resolve()), str(root / f"local-{i}"), dict(os.environ))
                    else:
                        env = {**os.environ, **server.env(), "TRAINPIPE_STAGING_DIR": str(root / f"staging-{i}")}
                        seconds = _run(f"s3://{BUCKET}/bars", f"s3://{BUCKET}/runs/{i}", env)
                    times[variant].append(seconds)
                    print(f"# {variant} #{i + 1}: {seconds:.1f} s", flush=True)
        finally:
            s3server.stop(server)
    local = statistics.median(times["local folder"])
    print("\n| bars and outputs | wall s (median) | runs (s) |\n| --- | ---: | --- |")
    for variant, runs in times.items():
        print(f"| {variant} | {statistics.median(runs):.1f} | {', '.join(f'{r:.1f}' for r in runs)} |")
    print(f"\nS3 / local: {statistics.median(times['S3 server']) / local:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
