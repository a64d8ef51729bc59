"""PyTorch families of the GPU stage: sequence models over time windows and tabular models over feature tokens.

Loaded by the registry; torch is imported inside the trainers only. Two kinds:
* cnn1d, lstm, transformer read real time windows (N, lookback, F) built per symbol from past rows only
  (`trainpipe.families.windows`); rows with a short history are left-padded with zeros (= the feature
  mean after scaling). Their `predict` therefore needs 'ts' and 'symbol' and should get enough history
  rows before the rows of interest; the prediction for a row never depends on a later row.
* tab_cnn, tab_lstm, tab_transformer treat the F features of ONE row as a sequence of F tokens.
Shared loop: seeded batch order, Adam, early stopping on the purged time-ordered tail, best weights kept.
Runs on CUDA when available, else CPU under the CPU budget (`trainpipe.families.budget`); device and budget are recorded in model_meta.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType
from trainpipe.families.base import Rows, Trainer, num_threads
from trainpipe.families.budget import training_budget
from trainpipe.families.windows import build_windows

_PRED_BATCH = 4096


def _torch():
    import torch

    torch.set_num_threads(num_threads())
    # CPU kernels are deterministic already; on CUDA pin cuDNN. (torch.use_deterministic_algorithms is not
    # used: it imports torch._inductor, whose LLVM aborts the process when TensorFlow is loaded too.)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return torch


def torch_device() -> tuple[Any, str]:
    """(torch.device, label) — 'cuda:0 (<card>)' when a GPU is visible, else 'cpu'."""
    torch = _torch()
    if torch.cuda.is_available():
        return torch.device("cuda:0"), f"cuda:0 ({torch.cuda.get_device_name(0)})"
    return torch.device("cpu"), "cpu"


class _TorchTrainer(Trainer):
    scale = True

    def _build(self, n_features: int) -> Any:
        """The nn.Module mapping the input batch to (N,) raw outputs."""
        raise NotImplementedError

    def _inputs(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        return x.astype(np.float32)

    def _prepare(self, x: np.ndarray) -> None:
        """Hook to fit data-dependent buffers (bin edges) before the net is built."""

    def _loss(self, torch: Any, out: Any, y: Any) -> Any:
        if self.task is TaskType.BINARY:
            return torch.nn.functional.binary_cross_entropy_with_logits(out, y)
        return torch.mean((out - y) ** 2)

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        torch = _torch()
        torch.manual_seed(self.seed)
        device, label = torch_device()
        self.extra_meta["device"] = label
        budget = training_budget(self.params, label)
        self.params = budget.apply(self.params)  # before the windows are cut: lookback is part of the budget
        self.extra_meta["budget"] = budget.record()
        self.y_mean, self.y_std = (0.0, 1.0) if self.task is TaskType.BINARY else (float(y.mean()), float(y.std() or 1.0))
        target = ((y - self.y_mean) / self.y_std).astype(np.float32)
        inputs = self._inputs(x, rows)
        self._prepare(x)
        self.net = self._build(x.shape[1]).to(device)
        p = self.params
        opt = torch.optim.Adam(self.net.parameters(), lr=p["learning_rate"])
        fit_idx, val_idx = self.tail_split(rows)
        xt, yt = torch.from_numpy(inputs), torch.from_numpy(target)
        rng = np.random.default_rng(self.seed)
        best, best_state, waited, history = np.inf, None, 0, []
        for _epoch in range(p["epochs"]):
            self.net.train()
            order = rng.permutation(fit_idx)
            losses = []
            for start in range(0, len(order), p["batch_size"]):
                b = torch.from_numpy(order[start : start + p["batch_size"]])
                opt.zero_grad()
                loss = self._loss(torch, self.net(xt[b].to(device)), yt[b].to(device))
                loss.backward()
                opt.step()
                losses.append(float(loss.detach().cpu()))
            entry = {"train_loss": float(np.mean(losses))}
            if len(val_idx):
                self.net.eval()
                with torch.no_grad():
                    vb = torch.from_numpy(val_idx)
                    entry["val_loss"] = float(self._loss(torch, self.net(xt[vb].to(device)), yt[vb].to(device)).cpu())
                if entry["val_loss"] < best - 1e-7:
                    best, waited = entry["val_loss"], 0
                    best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                else:
                    waited += 1
            history.append(entry)
            if len(val_idx) and p["patience"] > 0 and waited >= p["patience"]:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.net.eval()
        self.extra_meta["epochs_run"] = len(history)
        self.extra_meta["history"] = history

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        torch = _torch()
        device = next(self.net.parameters()).device
        inputs = torch.from_numpy(self._inputs(x, rows))
        self.net.eval()
        outs = []
        with torch.no_grad():
            for i in range(0, len(inputs), _PRED_BATCH):
                outs.append(self.net(inputs[i : i + _PRED_BATCH].to(device)).double().cpu().numpy())
        raw = np.concatenate(outs) if outs else np.zeros(0)
        if self.task is TaskType.BINARY:
            return 1.0 / (1.0 + np.exp(-raw))
        return raw * self.y_std + self.y_mean

    def _save(self, folder: Path) -> list[str]:
        torch = _torch()
        torch.save({k: v.cpu() for k, v in self.net.state_dict().items()}, folder / "model.pt")
        (folder / "architecture.json").write_text(json.dumps({"n_features": len(self.features), "y_mean": self.y_mean, "y_std": self.y_std}))
        return ["model.pt", "architecture.json"]

    def _load(self, folder: Path) -> None:
        torch = _torch()
        device, label = torch_device()
        state = json.loads((folder / "architecture.json").read_text())
        self.y_mean, self.y_std = state["y_mean"], state["y_std"]
        weights = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        self._restore_buffers(weights)
        self.net = self._build(state["n_features"])
        self.net.load_state_dict(weights)
        self.net.to(device).eval()

    def _restore_buffers(self, weights: dict[str, Any]) -> None:
        pass


# ---- sequence families: real time windows ---------------------------------------------------------


class _SequenceTrainer(_TorchTrainer):
    def _inputs(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        assert rows is not None, "sequence families get ts/symbol rows from Trainer.predict"
        self.extra_meta["padding"] = "left zero-padding (feature mean after scaling) for rows with fewer than lookback past rows"
        return build_windows(x, rows.ts, rows.symbols, self.params["lookback"])


class CNN1DTrainer(_SequenceTrainer):
    """Two causal 1-D convolutions over time; the last step and the window mean feed a linear head."""

    family = "cnn1d"

    def _build(self, n_features: int) -> Any:
        import torch
        from torch import nn

        p = self.params
        k, c = p["kernel_size"], p["channels"]

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.c1 = nn.Conv1d(n_features, c, k)
                self.c2 = nn.Conv1d(c, c, k)
                self.drop = nn.Dropout(p["dropout"])
                self.out = nn.Linear(2 * c, 1)

            def forward(self, x):  # (N, L, F)
                h = x.transpose(1, 2)
                h = torch.relu(self.c1(nn.functional.pad(h, (k - 1, 0))))  # left pad only: causal
                h = torch.relu(self.c2(nn.functional.pad(h, (k - 1, 0))))
                feats = torch.cat([h[:, :, -1], h.mean(dim=2)], dim=1)
                return self.out(self.drop(feats)).squeeze(-1)

        return Net()


class LSTMTrainer(_SequenceTrainer):
    """LSTM over the window; the last hidden state feeds a linear head."""

    family = "lstm"

    def _build(self, n_features: int) -> Any:
        from torch import nn

        p = self.params

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.rnn = nn.LSTM(n_features, p["hidden"], num_layers=p["num_layers"], batch_first=True)
                self.drop = nn.Dropout(p["dropout"])
                self.out = nn.Linear(p["hidden"], 1)

            def forward(self, x):
                h, _ = self.rnn(x)
                return self.out(self.drop(h[:, -1])).squeeze(-1)

        return Net()


class TransformerTrainer(_SequenceTrainer):
    """Transformer encoder over the window with learned positions and a causal mask; the last token predicts."""

    family = "transformer"

    def _build(self, n_features: int) -> Any:
        import torch
        from torch import nn

        p = self.params
        d, lookback = p["d_model"], p["lookback"]

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.proj = nn.Linear(n_features, d)
                self.pos = nn.Parameter(torch.zeros(1, lookback, d))
                layer = nn.TransformerEncoderLayer(d, p["n_heads"], dim_feedforward=2 * d, dropout=p["dropout"], batch_first=True)
                self.enc = nn.TransformerEncoder(layer, p["num_layers"], enable_nested_tensor=False)
                self.register_buffer("mask", torch.triu(torch.full((lookback, lookback), float("-inf")), diagonal=1))
                self.out = nn.Linear(d, 1)

            def forward(self, x):
                h = self.enc(self.proj(x) + self.pos, mask=self.mask)
                return self.out(h[:, -1]).squeeze(-1)

        return Net()


# ---- tabular families: the features of one row as tokens --------------------------------------


class _FeatureTokens:
    """Token t_j = x_j · W_j + B_j (a per-column linear embedding of the scalar value)."""

    @staticmethod
    def make(n_features: int, d: int) -> Any:
        import torch
        from torch import nn

        class Tokens(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.w = nn.Parameter(torch.randn(n_features, d) * 0.1)
                self.b = nn.Parameter(torch.zeros(n_features, d))

            def forward(self, x):  # (N, F) -> (N, F, d)
                return x.unsqueeze(-1) * self.w + self.b

        return Tokens()


class TabCNNTrainer(_TorchTrainer):
    """Convolutions across the feature tokens of one row (neighbouring plan features), max+mean pooled."""

    family = "tab_cnn"

    def _build(self, n_features: int) -> Any:
        import torch
        from torch import nn

        p = self.params
        k = min(p["kernel_size"], n_features)

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.tokens = _FeatureTokens.make(n_features, p["d_token"])
                self.c1 = nn.Conv1d(p["d_token"], p["channels"], k, padding="same")
                self.c2 = nn.Conv1d(p["channels"], p["channels"], k, padding="same")
                self.drop = nn.Dropout(p["dropout"])
                self.out = nn.Linear(2 * p["channels"], 1)

            def forward(self, x):
                h = self.tokens(x).transpose(1, 2)  # (N, d, F)
                h = torch.relu(self.c2(torch.relu(self.c1(h))))
                feats = torch.cat([h.max(dim=2).values, h.mean(dim=2)], dim=1)
                return self.out(self.drop(feats)).squeeze(-1)

        return Net()


class TabLSTMTrainer(_TorchTrainer):
    """LSTM reading the feature tokens of one row in plan order; the last hidden state predicts."""

    family = "tab_lstm"

    def _build(self, n_features: int) -> Any:
        from torch import nn

        p = self.params

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.tokens = _FeatureTokens.make(n_features, p["d_token"])
                self.rnn = nn.LSTM(p["d_token"], p["hidden"], batch_first=True)
                self.drop = nn.Dropout(p["dropout"])
                self.out = nn.Linear(p["hidden"], 1)

            def forward(self, x):
                h, _ = self.rnn(self.tokens(x))
                return self.out(self.drop(h[:, -1])).squeeze(-1)

        return Net()


class TabTransformerTrainer(_TorchTrainer):
    """TabTransformer (Huang et al. 2020, arXiv:2012.06678) for all-numeric features.

    Each numeric column is also quantile-binned (edges fitted on the training rows) and used as the
    paper's categorical input: token_j = [value embedding of (column j, bin) ‖ shared column-identifier
    embedding of j] (the paper's column embedding, 1/4 of d_model shared). A transformer encoder
    contextualises the F tokens; their flattened output is concatenated with the layer-normed continuous
    features (the paper's continuous path) and an MLP gives the output.
    """

    family = "tab_transformer"

    def _prepare(self, x: np.ndarray) -> None:
        qs = np.linspace(0, 1, self.params["n_bins"] + 1)[1:-1]
        self.edges = np.quantile(x, qs, axis=0).T.astype(np.float32)  # (F, n_bins - 1)

    def _restore_buffers(self, weights: dict[str, Any]) -> None:
        self.edges = weights["edges"].numpy()

    def _build(self, n_features: int) -> Any:
        import torch
        from torch import nn

        p = self.params
        d, n_bins = p["d_model"], p["n_bins"]
        d_shared = max(1, d // 4)
        edges = torch.from_numpy(self.edges)

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.register_buffer("edges", edges.clone())
                self.register_buffer("offsets", torch.arange(n_features) * n_bins)
                self.values = nn.Embedding(n_features * n_bins, d - d_shared)
                self.columns = nn.Embedding(n_features, d_shared)
                layer = nn.TransformerEncoderLayer(d, p["n_heads"], dim_feedforward=2 * d, dropout=p["dropout"], batch_first=True)
                self.enc = nn.TransformerEncoder(layer, p["num_layers"], enable_nested_tensor=False)
                self.norm = nn.LayerNorm(n_features)
                hidden = max(16, 2 * d)
                self.mlp = nn.Sequential(nn.Linear(n_features * d + n_features, hidden), nn.ReLU(), nn.Dropout(p["dropout"]), nn.Linear(hidden, 1))

            def forward(self, x):  # (N, F)
                bins = (x.unsqueeze(-1) > self.edges).sum(-1)  # (N, F) in 0..n_bins-1
                tok = torch.cat([self.values(bins + self.offsets), self.columns.weight.expand(x.shape[0], -1, -1)], dim=-1)
                ctx = self.enc(tok).flatten(1)
                return self.mlp(torch.cat([ctx, self.norm(x)], dim=1)).squeeze(-1)

        return Net()
