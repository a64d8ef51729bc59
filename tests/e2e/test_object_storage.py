"""`trainpipe` with bars and outputs on a real S3 server (SeaweedFS, the `s3_server` fixture): reads, publishing, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from trainpipe.data.loading import load_panel

BUCKET = "trainpipe"
# Small, so the tier stays fast: three symbols, one target kept, a few features, one CPU family.
SMALL = ("--symbols", "AAPL", "NVDA", "META", "--top-n-targets", "1", "--top-m-features", "5", "--train-anyway",
         "--families", "lightgbm")


def cli(server, *args: str, staging: Path, **env_over: str) -> subprocess.CompletedProcess:
    """The CLI as a pod runs it: the store's AWS_* variables in the environment, its own staging folder."""
    env = {**os.environ, **server.env(), "TRAINPIPE_STAGING_DIR": str(staging), "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **env_over}
    return subprocess.run([sys.executable, "-m", "trainpipe.cli.main", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-6000:]}"
    return result.stdout + result.stderr


def store(server) -> pafs.S3FileSystem:
    scheme, host = server.endpoint.split("://")
    return pafs.S3FileSystem(access_key=server.access_key, secret_key=server.secret_key, endpoint_override=host, scheme=scheme,
                             region=server.region)


@pytest.fixture(scope="module")
def bars(s3_server, example_data: Path) -> str:
    """The example data uploaded as it lies on disk (symbol=<SYM>/<SYM>.parquet), plus one long file and an empty prefix."""
    s3 = store(s3_server)
    pafs.copy_files(str(example_data), f"{BUCKET}/bars", destination_filesystem=s3)
    # One long file of two symbols, a row group per symbol: the statistics the symbol filter skips groups by.
    tables = [pq.read_table(example_data / f"symbol={s}" / f"{s}.parquet") for s in ("AAPL", "NVDA")]
    tables = [t.append_column("symbol", pa.array([s] * t.num_rows)) for t, s in zip(tables, ("AAPL", "NVDA"), strict=True)]
    with s3.open_output_stream(f"{BUCKET}/long/bars.parquet") as out:
        pq.write_table(pa.concat_tables(tables), out, row_group_size=tables[0].num_rows)
    with s3.open_output_stream(f"{BUCKET}/no-parquet/README.txt") as out:
        out.write(b"not data")
    return f"s3://{BUCKET}/bars"


def test_loader_reads_both_layouts_from_the_store_with_symbol_and_column_pushdown(s3_server, bars, monkeypatch):
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    panel = load_panel(bars, ["NVDA", "AAPL"], columns=["fwd_ret_5d", "ret_1d"])
    assert panel.symbols == ("AAPL", "NVDA")
    assert [str(f) for f in panel.files] == [f"{bars}/symbol=AAPL/AAPL.parquet", f"{bars}/symbol=NVDA/NVDA.parquet"]
    assert list(panel.frame.columns) == ["ts", "symbol", "ret_1d", "fwd_ret_5d"]
    long = load_panel(f"s3://{BUCKET}/long/bars.parquet", ["NVDA"], columns=["fwd_ret_5d"])
    assert long.symbols == ("NVDA",) and len(long.frame) == len(panel.frame[panel.frame.symbol == "NVDA"])


def test_the_doc_runs_as_written(s3_server, example_data, tmp_path):
    """docs/object-storage.md's block, with this server's keys and address for the placeholders: a run on three symbols
    that trains and publishes every stage, and rank on one long file."""
    import re

    from trainpipe_localcluster.s3server import make_buckets

    make_buckets(s3_server, ["bars", "models"])
    s3 = store(s3_server)
    pafs.copy_files(str(example_data), "bars/daily", destination_filesystem=s3)
    tables = [pq.read_table(example_data / f"symbol={s}" / f"{s}.parquet") for s in ("AAPL", "NVDA", "META")]
    tables = [t.append_column("symbol", pa.array([s] * t.num_rows)) for t, s in zip(tables, ("AAPL", "NVDA", "META"), strict=True)]
    with s3.open_output_stream("bars/long/bars.parquet") as out:
        pq.write_table(pa.concat_tables(tables), out)
    [block] = re.findall(r"^```sh\n(.*?)^```$", (ROOT / "docs" / "object-storage.md").read_text(), flags=re.M | re.S)
    host = s3_server.endpoint.split("://", 1)[1]
    script = (block.replace("AWS_ACCESS_KEY_ID=…", f"AWS_ACCESS_KEY_ID={s3_server.access_key}")
              .replace("AWS_SECRET_ACCESS_KEY=…", f"AWS_SECRET_ACCESS_KEY={s3_server.secret_key}").replace("127.0.0.1:8333", host))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "trainpipe").write_text(f"#!/bin/sh\nexec {sys.executable} -m trainpipe.cli.main \"$@\"\n")
    (bin_dir / "trainpipe").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT / "jobs"), "COLUMNS": "200",
        "TRAINPIPE_STAGING_DIR": str(tmp_path / "staging")}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    text = ok(result)
    assert s3_server.secret_key not in text
    records = {p.base_name for p in s3.get_file_info(pafs.FileSelector("models/demo/_complete"))}
    assert {"rank.json", "select.json", "plan.json", "cpu.json", "report.json"} <= records, records
    ranked = json.loads((tmp_path / "out" / "x" / "ranking" / "target_rankings.json").read_text())
    assert ranked["targets"], "rank read the long file"


def test_run_reads_bars_and_publishes_every_stage_with_completion_records(s3_server, bars, tmp_path):
    out = f"s3://{BUCKET}/runs/a"
    first = ok(cli(s3_server, "run", "--data-dir", bars, *SMALL, "--output-dir", out, staging=tmp_path / "pod-1"))
    s3 = store(s3_server)
    records = {p.base_name for p in s3.get_file_info(pafs.FileSelector(f"{BUCKET}/runs/a/_complete"))}
    assert {"rank.json", "select.json", "plan.json", "cpu.json", "report.json"} <= records
    report = json.loads(s3.open_input_stream(f"{BUCKET}/runs/a/_complete/report.json").read())
    names = set(report["objects"])
    assert "report.html" in names and "ranking/target_rankings.parquet" in names
    assert any(n.startswith("models/") and n.endswith("metrics.json") for n in names), sorted(names)
    for name, entry in report["objects"].items():  # the record lists exactly what is on the store
        assert s3.get_file_info(f"{BUCKET}/runs/a/{name}").size == entry["size"], name
    assert s3_server.secret_key not in first and s3_server.access_key not in first

    # Another pod (a fresh staging folder) with the same inputs: every stage comes from the store, none recomputes.
    again = ok(cli(s3_server, "run", "--data-dir", bars, *SMALL, "--output-dir", out, staging=tmp_path / "pod-2"))
    for stage in ("rank", "select", "plan", "cpu"):
        assert f"{stage}: inputs unchanged since the last run" in again, again[-3000:]


@pytest.mark.parametrize("case", ["missing bucket", "wrong credentials", "prefix with no parquet"])
def test_bad_store_input_is_one_clear_error_naming_the_uri(s3_server, bars, tmp_path, case):
    data, env, says = {
        "missing bucket": ("s3://no-such-bucket/bars", {}, "the bucket 'no-such-bucket' does not exist"),
        "wrong credentials": (bars, {"AWS_SECRET_ACCESS_KEY": "wrong-" + s3_server.secret_key[:8]}, "access denied"),
        "prefix with no parquet": (f"s3://{BUCKET}/no-parquet", {}, "no data found"),
    }[case]
    result = cli(s3_server, "rank", "--data-dir", data, "--output-dir", str(tmp_path / "out"), staging=tmp_path / "stage", **env)
    text = result.stdout + result.stderr
    assert result.returncode == 3, text[-3000:]  # BAD_DATA: fails at once, no retry helps
    assert data in text and says in text, text[-3000:]
    assert "Traceback" not in text and s3_server.secret_key[:12] not in text


def test_an_object_deleted_mid_run_is_an_error_naming_it(s3_server, bars, tmp_path, monkeypatch):
    """Deleted between listing and use: a data object (the cache digest, the read), and a published output a record lists."""
    from trainpipe.data.errors import DataError
    from trainpipe.data.loading import find_files
    from trainpipe.io.objectstore import ObjectPath, ObjectStoreError, StagedOutput
    from trainpipe.runner.digests import digest_files

    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    s3 = store(s3_server)
    pafs.copy_files(f"{BUCKET}/bars/symbol=META", f"{BUCKET}/doomed/symbol=META", source_filesystem=s3, destination_filesystem=s3)
    [listed] = find_files(f"s3://{BUCKET}/doomed")
    s3.delete_file(f"{BUCKET}/doomed/symbol=META/META.parquet")
    with pytest.raises(ObjectStoreError, match=r"s3://trainpipe/doomed/symbol=META/META.parquet: no such object"):
        digest_files([listed])
    with pytest.raises(DataError, match=r"s3://trainpipe/doomed/symbol=META/META.parquet: (no such object|no object)"):
        load_panel(f"s3://{BUCKET}/doomed/symbol=META/META.parquet")

    out = StagedOutput(ObjectPath.parse(f"s3://{BUCKET}/runs/deleted"), tmp_path / "a", ("rank", "report"))
    out.pull()
    (tmp_path / "a" / "ranking").mkdir(parents=True)
    (tmp_path / "a" / "ranking" / "r.json").write_text("{}")
    out.push("rank")
    s3.delete_file(f"{BUCKET}/runs/deleted/ranking/r.json")
    with pytest.raises(ObjectStoreError, match=r"s3://trainpipe/runs/deleted/ranking/r.json: no such object"):
        StagedOutput(out.remote, tmp_path / "b", out.stages).pull()


def test_rank_in_target_groups_on_the_store_merges_what_each_pod_published(s3_server, bars, tmp_path):
    """stages.rank.targetGroups with outputs on the store: each group in a pod of its own (its own staging folder)
    publishes its part as a unit record; the aggregate, in another pod, finds them there and ranks as one process would."""
    common = ("--data-dir", bars, "--symbols", "AAPL", "NVDA", "META", "--seed", "7")
    grouped = f"s3://{BUCKET}/runs/groups"
    ok(cli(s3_server, "rank", *common, "--groups", "2", "--unit-index", "1", "--output-dir", grouped, staging=tmp_path / "unit-1"))
    early = cli(s3_server, "rank", *common, "--groups", "2", "--aggregate", "--output-dir", grouped, staging=tmp_path / "early")
    assert early.returncode != 0 and "unit 0 of 2 has not written its part" in early.stdout + early.stderr, (early.stdout + early.stderr)[-3000:]
    ok(cli(s3_server, "rank", *common, "--groups", "2", "--unit-index", "0", "--output-dir", grouped, staging=tmp_path / "unit-0"))
    ok(cli(s3_server, "rank", *common, "--groups", "2", "--aggregate", "--output-dir", grouped, staging=tmp_path / "aggregate"))
    single = f"s3://{BUCKET}/runs/single"
    ok(cli(s3_server, "rank", *common, "--output-dir", single, staging=tmp_path / "single"))

    s3 = store(s3_server)
    units = {p.base_name for p in s3.get_file_info(pafs.FileSelector(f"{BUCKET}/runs/groups/_complete/units/rank"))}
    assert units == {"index-0.json", "index-1.json"}
    record = json.loads(s3.open_input_stream(f"{BUCKET}/runs/groups/_complete/rank.json").read())
    assert "ranking/target_rankings.json" in record["objects"]

    def rankings(prefix: str) -> dict:
        return json.loads(s3.open_input_stream(f"{BUCKET}/runs/{prefix}/ranking/target_rankings.json").read())

    grouped_rankings = rankings("groups")
    assert grouped_rankings["targets"] and grouped_rankings == rankings("single")
