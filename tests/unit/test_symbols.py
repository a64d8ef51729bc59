"""Real tickers as symbols: every path-safe name is accepted, and maps injectively into job and unit ids."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.units import dns_label, symbol_key, unit_id
from trainpipe.stages.planning import job_id

REAL = ["^VIX", "ES=F", "EURUSD=X", "BRK-B", "BRK.B", "AAPL", "aapl", "_VIX", "BTC-USD", "0700.HK", "^GSPC", "CL=F"]


def test_real_tickers_are_symbols():
    spec = PipelineSpec.model_validate({"data": {"symbols": REAL}})
    assert spec.data.symbols == REAL


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "..", "x..y", "with space", "tab\there", "nl\n", "\x00", ""])
def test_only_path_unsafe_names_are_refused(bad):
    with pytest.raises(ValidationError, match="symbols"):
        PipelineSpec.model_validate({"data": {"symbols": [bad]}})


def test_symbol_keys_are_injective_safe_and_readable():
    keys = {s: symbol_key(s) for s in REAL}
    assert len(set(keys.values())) == len(REAL)  # '^VIX'/'_VIX' and 'AAPL'/'aapl' stay apart
    assert keys["AAPL"] == "aapl" and keys["BRK.B"] == "brk.b"  # plain tickers keep their ids
    assert keys["^VIX"].startswith("vix-") and keys["ES=F"].startswith("es-f-")
    for key in keys.values():
        assert re.fullmatch(r"[a-z0-9.-]+", key)
    ids = {job_id("sym", "fwd_ret_5d", key) for key in keys.values()}
    assert len(ids) == len(REAL) and all(re.fullmatch(r"[a-z0-9_.-]+", i) for i in ids)
    units = {unit_id(i, "lightgbm") for i in ids}
    assert len(units) == len(REAL) and all(u == dns_label(u) for u in units)


def test_a_run_on_real_ticker_names_plans_jobs_with_safe_ids(tmp_path):
    from panels import make_panel, write_panel
    from trainpipe.contract.names import Stage
    from trainpipe.io.layout import Layout
    from trainpipe.io.plan_files import read_training_plan
    from trainpipe.runner.steps import RunContext, run_stage

    symbols = ("^VIX", "ES=F", "EURUSD=X")
    write_panel(make_panel(n_days=600, symbols=symbols), tmp_path / "data")
    spec = PipelineSpec.model_validate({
        "data": {"dir": str(tmp_path / "data"), "symbols": list(symbols), "minRowsPerSymbol": 100},
        "targets": {"include": ["fwd_ret_1d"]}, "features": {"topM": 3}, "ranking": {"folds": 2},
        "routing": {"minSampleSizeCs": 50, "minSampleSizeSymbol": 20, "maxFractionSymbolsPerTarget": 1.0},
        "training": {"families": ["lightgbm"], "allowEmptyPlan": True},
    })
    ctx = RunContext(spec=spec, layout=Layout(tmp_path / "out"), threads=1)
    for stage in (Stage.RANK, Stage.SELECT, Stage.PLAN):
        run_stage(ctx, stage)
    plan = read_training_plan(ctx.layout.master_training_plan)
    assert set(plan.metadata.holdout_cut.symbols) == set(symbols)
    for job in plan.jobs:
        assert re.fullmatch(r"[a-z0-9_.-]+", job.job_id)
        if job.symbol is not None:
            assert job.job_id.endswith(symbol_key(job.symbol))
