"""The training budget of the neural families by device: the CPU budget table, its reasons and the report's reading of it."""

from __future__ import annotations

import pytest

from trainpipe.families.budget import CPU_CAPS, describe, training_budget
from trainpipe.families.catalogue import FAMILIES, GPU_FAMILIES

DEFAULTS = {"epochs": 8, "patience": 3, "batch_size": 256, "lookback": 20}

# (params, device label) -> (device, epochs, patience, batch_size, lookback, reason)
CASES = [
    pytest.param(DEFAULTS, "cuda:0 (NVIDIA H100)", ("gpu", 8, 3, 256, 20, "GPU: full budget"), id="gpu-keeps-every-value"),
    pytest.param(DEFAULTS, "cpu", ("cpu", 3, 1, 1024, 10, "no GPU: CPU budget"), id="cpu-caps-the-defaults"),
    pytest.param({**DEFAULTS, "full_budget_on_cpu": True}, "cpu", ("cpu", 8, 3, 256, 20, "no GPU, full budget forced (full_budget_on_cpu)"),
                 id="cpu-forced-full"),
    pytest.param({**DEFAULTS, "full_budget_on_cpu": True}, "cuda:0 (x)", ("gpu", 8, 3, 256, 20, "GPU: full budget"), id="gpu-ignores-force"),
    pytest.param({"epochs": 2, "patience": 0, "batch_size": 4096, "lookback": 5}, "cpu", ("cpu", 2, 0, 4096, 5, "no GPU: CPU budget"),
                 id="cpu-keeps-values-already-within-budget"),
    pytest.param({"epochs": 8, "patience": 3, "batch_size": 256}, "cpu", ("cpu", 3, 1, 1024, None, "no GPU: CPU budget"),
                 id="cpu-tabular-has-no-lookback"),
]


@pytest.mark.parametrize(("params", "device", "expected"), CASES)
def test_budget_table(params: dict, device: str, expected: tuple) -> None:
    b = training_budget(params, device)
    assert (b.device, b.epochs, b.patience, b.batch_size, b.lookback, b.reason) == expected


def test_applied_budget_is_what_the_model_saves_and_is_deterministic() -> None:
    params = {**DEFAULTS, "hidden": 32}
    applied = training_budget(params, "cpu").apply(params)
    assert applied == {"epochs": 3, "patience": 1, "batch_size": 1024, "lookback": 10, "hidden": 32}
    assert training_budget(params, "cpu") == training_budget(params, "cpu")
    assert params["epochs"] == 8  # the caller's parameters are not changed in place


def test_every_gpu_family_default_is_capped_on_cpu_and_can_force_the_full_budget() -> None:
    for name in GPU_FAMILIES:
        defaults = FAMILIES[name].defaults
        assert defaults["full_budget_on_cpu"] is False, name
        b = training_budget(defaults, "cpu")
        assert b.epochs < defaults["epochs"] and b.patience < defaults["patience"], name
        assert (b.lookback is not None) == FAMILIES[name].sequence, name
        assert b.lookback is None or b.lookback <= CPU_CAPS["lookback"][1]


def test_report_cell_reads_the_record() -> None:
    assert describe(None) == ""
    assert describe(training_budget(DEFAULTS, "cpu").record()) == "no GPU: CPU budget (3 epochs, patience 1, batch 1024, lookback 10)"
    record = training_budget({"epochs": 8, "patience": 3, "batch_size": 256}, "cpu").record()
    assert "lookback" not in record and describe(record) == "no GPU: CPU budget (3 epochs, patience 1, batch 1024)"
