"""Benchmarks and synthetic data for trainpipe's tests: a package of its own, installed beside trainpipe by
`make install` and never part of the trainpipe wheel or the images.

    python -m trainpipe_bench ...               `make bench`: stage wall time and peak memory into BENCHMARKS.md
    trainpipe_bench.family_bench                per-family train seconds, peak RSS and device
    trainpipe_bench.synthetic                   small panels with a known signal (unit tests, smoke benchmarks)
"""
