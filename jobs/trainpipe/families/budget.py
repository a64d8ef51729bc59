"""The training budget of a neural (GPU-stage) family on the device it landed on; called by the TF and Torch trainers.

On a GPU a family trains with its parameters as given. On a CPU (a laptop, `make demo`, a GPU pod whose
card is not visible) the same budget takes minutes per model, so the CPU budget caps the knobs that
cost time and barely move a noisy financial fit: fewer epochs, earlier stopping, larger batches and
shorter windows. A parameter already below a cap keeps its value. `full_budget_on_cpu` turns the caps
off. Pure: the decision and its reason are recorded in each model's metrics.json (`budget`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from trainpipe.families.catalogue import GPU_FAMILIES

CPU = "cpu"
GPU = "gpu"

# The CPU budget, one row per knob: (how it is bounded, the bound). Why: on 2 cores the demo's 32 LSTM
# models took 303 s of training at 8 epochs, patience 3, batch 256 and 20-bar windows, and about 90 s under
# these caps. It costs fit: at the full budget half of them had their best validation loss within 3 epochs,
# but 9 were still improving at epoch 8; hence the budget is recorded with each model and can be turned off.
# The dense (TF) families cost about a second a model either way (graph tracing and building, not epochs).
CPU_CAPS: Mapping[str, tuple[str, int]] = {
    "epochs": ("at most", 3),
    "patience": ("at most", 1),
    "batch_size": ("at least", 1024),  # fewer, larger steps: per-step overhead dominates small CPU batches
    "lookback": ("at most", 10),  # sequence families only: window length is linear in LSTM time
}

REASONS: Mapping[str, str] = {
    "gpu": "GPU: full budget",
    "cpu": "no GPU: CPU budget",
    "cpu_forced": "no GPU, full budget forced (full_budget_on_cpu)",
}


@dataclass(frozen=True)
class Budget:
    """What one model trains with: the device kind, the budget knobs in force, and why."""

    device: str  # "cpu" or "gpu"
    epochs: int
    patience: int
    batch_size: int
    lookback: int | None  # None for families that read one row at a time
    reason: str

    def record(self) -> dict[str, Any]:
        """The `budget` entry of metrics.json (lookback left out for non-sequence families)."""
        out = asdict(self)
        if self.lookback is None:
            del out["lookback"]
        return out

    def apply(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` with the budget's knobs in force (saved with the model, so it reloads the same way)."""
        out = dict(params)
        out.update(epochs=self.epochs, patience=self.patience, batch_size=self.batch_size)
        if self.lookback is not None:
            out["lookback"] = self.lookback
        return out


def _bounded(value: int, rule: tuple[str, int]) -> int:
    how, bound = rule
    return min(value, bound) if how == "at most" else max(value, bound)


def training_budget(params: Mapping[str, Any], device_label: str) -> Budget:
    """The budget for a family with `params` trained on `device_label` ("cpu" or "cuda:0 (<card>)")."""
    lookback = params.get("lookback")
    on_gpu = device_label != CPU
    if on_gpu or params.get("full_budget_on_cpu", False):
        return Budget(device=GPU if on_gpu else CPU, epochs=params["epochs"], patience=params["patience"],
                      batch_size=params["batch_size"], lookback=lookback, reason=REASONS["gpu" if on_gpu else "cpu_forced"])
    return Budget(device=CPU, epochs=_bounded(params["epochs"], CPU_CAPS["epochs"]),
                  patience=_bounded(params["patience"], CPU_CAPS["patience"]),
                  batch_size=_bounded(params["batch_size"], CPU_CAPS["batch_size"]),
                  lookback=None if lookback is None else _bounded(lookback, CPU_CAPS["lookback"]), reason=REASONS["cpu"])


def describe(record: Mapping[str, Any] | None) -> str:
    """The report's one-cell reading of a metrics.json `budget` ("" for families without one)."""
    if not record:
        return ""
    knobs = f"{record['epochs']} epochs, patience {record['patience']}, batch {record['batch_size']}"
    if record.get("lookback") is not None:
        knobs += f", lookback {record['lookback']}"
    return f"{record['reason']} ({knobs})"


def full_budget_params() -> dict[str, dict[str, Any]]:
    """Parameter overrides that force the full budget on every GPU family (spec `training.fullBudgetOnCpu`).

    A parameter rather than a side setting, so it is part of each unit's fingerprint: switching it retrains.
    """
    return {name: {"full_budget_on_cpu": True} for name in GPU_FAMILIES}
