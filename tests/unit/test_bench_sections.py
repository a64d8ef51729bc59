"""`make bench` rewrites BENCHMARKS.md but must keep the sections other benchmarks own (cluster tier, scale)."""

from trainpipe_bench.stage_bench import _merge


def test_make_bench_keeps_every_section_another_benchmark_wrote(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\nold stage table\n\n<!-- cluster:start -->\ncluster figures\n<!-- cluster:end -->\n\n"
                    "<!-- scale:start -->\n## Scale\n50 pipelines\n<!-- scale:end -->\n")

    merged = _merge(path, "# Benchmarks\nnew stage table\n")

    assert "old stage table" not in merged and merged.startswith("# Benchmarks\nnew stage table\n")
    assert "<!-- cluster:start -->\ncluster figures\n<!-- cluster:end -->" in merged
    assert "<!-- scale:start -->\n## Scale\n50 pipelines\n<!-- scale:end -->" in merged
