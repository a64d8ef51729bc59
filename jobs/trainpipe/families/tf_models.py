"""TensorFlow/Keras families of the GPU stage: mlp, vae, gan, multi_task; loaded by the registry.

TensorFlow is imported inside `_tf()` only, so the CPU stage never loads it. Training is a small
custom loop shared by the four families: mini-batches in a seeded order, early stopping on the purged,
time-ordered tail of the training rows (best weights restored), op determinism on. Regression targets
are standardised for training and mapped back; binary heads output logits and predict P(class 1). On a CPU the loop runs under the CPU budget (`trainpipe.families.budget`).
Models are saved as Keras weight files plus the architecture parameters (rebuilt on load).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType
from trainpipe.families.base import Rows, Trainer, num_threads
from trainpipe.families.budget import training_budget

_PRED_BATCH = 8192


def _tf():
    """Import TensorFlow with the stage's thread plan and deterministic ops (idempotent)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN reorders float sums: results would vary run to run
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads())
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process: the first setting stays
    tf.config.experimental.enable_op_determinism()
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)  # share the card; never grab it all
        except RuntimeError:
            pass
    return tf


def tf_device() -> str:
    """'cuda:0 (<card>)' when TensorFlow sees a GPU, else 'cpu'."""
    tf = _tf()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return f"cuda:0 ({name})"


class _KerasTrainer(Trainer):
    """Shared loop, target scaling, save/load for the Keras families."""

    scale = True

    # -- per family ---------------------------------------------------------------------------
    def _build(self, n_features: int) -> None:
        raise NotImplementedError

    def _models(self) -> dict[str, Any]:
        raise NotImplementedError

    def _make_step(self, tf: Any) -> Callable:
        """A tf.function(x, y, mask) that applies one update and returns the batch loss."""
        raise NotImplementedError

    def _forward(self, x: Any) -> Any:
        """Raw output for the primary target (standardised value or logit)."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def _targets(self, y: np.ndarray, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(Y matrix: primary then aux targets, mask of known values); regression columns standardised."""
        cols = [y]
        for aux in self.aux_targets:
            if aux not in frame.columns:
                raise KeyError(self.err(f"auxiliary target {aux!r} is not a column of the frame"))
            cols.append(frame[aux].to_numpy(dtype=np.float64))
        mat = np.column_stack(cols)
        mask = np.isfinite(mat)
        self.y_mean = np.where(mask, mat, 0).sum(0) / np.maximum(mask.sum(0), 1)
        var = np.where(mask, (mat - self.y_mean) ** 2, 0).sum(0) / np.maximum(mask.sum(0), 1)
        self.y_std = np.where(var > 1e-24, np.sqrt(var), 1.0)
        if self.task is TaskType.BINARY:
            self.y_mean[0], self.y_std[0] = 0.0, 1.0
        mat = np.where(mask, (mat - self.y_mean) / self.y_std, 0.0)
        return mat.astype(np.float32), mask.astype(np.float32)

    def _primary_loss(self, tf: Any, out: Any, y: Any) -> Any:
        if self.task is TaskType.BINARY:
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=out))
        return tf.reduce_mean(tf.square(out - y))

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        tf = _tf()
        import keras

        keras.utils.set_random_seed(self.seed)
        self.extra_meta["device"] = tf_device()
        budget = training_budget(self.params, self.extra_meta["device"])
        self.params = budget.apply(self.params)  # saved with the model: what it really trained with
        self.extra_meta["budget"] = budget.record()
        ymat, mask = self._targets(y, frame)
        x32 = x.astype(np.float32)
        self._build(x.shape[1])
        step = self._make_step(tf)
        fit_idx, val_idx = self.tail_split(rows)
        p = self.params
        rng = np.random.default_rng(self.seed)
        best, best_weights, waited, history = np.inf, None, 0, []
        for _epoch in range(p["epochs"]):
            order = rng.permutation(fit_idx)  # shuffles batch order inside the training part only
            losses = []
            for start in range(0, len(order), p["batch_size"]):
                b = order[start : start + p["batch_size"]]
                losses.append(float(step(tf.constant(x32[b]), tf.constant(ymat[b]), tf.constant(mask[b]))))
            entry = {"train_loss": float(np.mean(losses))}
            if len(val_idx):
                out = self._forward(tf.constant(x32[val_idx]))
                entry["val_loss"] = float(self._primary_loss(tf, out, tf.constant(ymat[val_idx, :1])))
                if entry["val_loss"] < best - 1e-7:
                    best, waited = entry["val_loss"], 0
                    best_weights = {k: m.get_weights() for k, m in self._models().items()}
                else:
                    waited += 1
            history.append(entry)
            if len(val_idx) and p["patience"] > 0 and waited >= p["patience"]:
                break
        if best_weights is not None:
            for k, m in self._models().items():
                m.set_weights(best_weights[k])
        self.extra_meta["epochs_run"] = len(history)
        self.extra_meta["history"] = history

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        tf = _tf()
        x32 = x.astype(np.float32)
        outs = [self._forward(tf.constant(x32[i : i + _PRED_BATCH])).numpy().reshape(-1) for i in range(0, len(x32), _PRED_BATCH)]
        raw = np.concatenate(outs) if outs else np.zeros(0)
        if self.task is TaskType.BINARY:
            return 1.0 / (1.0 + np.exp(-raw.astype(np.float64)))
        return raw.astype(np.float64) * self.y_std[0] + self.y_mean[0]

    def _save(self, folder: Path) -> list[str]:
        names = []
        for key, model in self._models().items():
            name = f"{key}.weights.h5"
            model.save_weights(str(folder / name))
            names.append(name)
        state = {"n_features": len(self.features), "y_mean": self.y_mean.tolist(), "y_std": self.y_std.tolist(), **self._state()}
        (folder / "architecture.json").write_text(json.dumps(state))
        return [*names, "architecture.json"]

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, folder: Path) -> None:
        _tf()
        state = json.loads((folder / "architecture.json").read_text())
        self.y_mean, self.y_std = np.asarray(state["y_mean"]), np.asarray(state["y_std"])
        self._restore_state(state)
        self._build(state["n_features"])
        for key, model in self._models().items():
            model.load_weights(str(folder / f"{key}.weights.h5"))

    def _restore_state(self, state: dict[str, Any]) -> None:
        pass


def _dense_stack(keras: Any, n_in: int, hidden: Sequence[int], dropout: float, n_out: int, name: str) -> Any:
    inputs = keras.Input(shape=(n_in,))
    h = inputs
    for units in hidden:
        h = keras.layers.Dense(units, activation="relu")(h)
        if dropout > 0:
            h = keras.layers.Dropout(dropout)(h)
    return keras.Model(inputs, keras.layers.Dense(n_out)(h), name=name)


class MLPTrainer(_KerasTrainer):
    """Dense ReLU network with dropout; one output (standardised return or logit)."""

    family = "mlp"

    def _build(self, n_features: int) -> None:
        import keras

        self.net = _dense_stack(keras, n_features, self.params["hidden"], self.params["dropout"], 1, "mlp")

    def _models(self) -> dict[str, Any]:
        return {"net": self.net}

    def _forward(self, x: Any) -> Any:
        return self.net(x, training=False)

    def _make_step(self, tf: Any) -> Callable:
        import keras

        opt = keras.optimizers.Adam(self.params["learning_rate"])

        @tf.function(reduce_retracing=True)
        def step(x, y, mask):
            with tf.GradientTape() as tape:
                loss = self._primary_loss(tf, self.net(x, training=True), y[:, :1])
            opt.apply_gradients(zip(tape.gradient(loss, self.net.trainable_variables), self.net.trainable_variables))
            return loss

        return step


class MultiTaskTrainer(_KerasTrainer):
    """Shared dense trunk, one linear head per target: the job's target first, then `aux_targets`.

    Joint loss = primary loss + aux_weight · mean over aux heads of the masked MSE (aux targets are
    standardised; rows where an aux target is NaN do not contribute). The stage runner passes as aux
    targets the plan's other regression targets whose horizon is not longer than this job's, so no aux
    label reaches past the purge gap. With no aux target it degenerates to an MLP (recorded in meta).
    """

    family = "multi_task"

    def _build(self, n_features: int) -> None:
        import keras

        n_heads = 1 + len(self.aux_targets)
        inputs = keras.Input(shape=(n_features,))
        h = inputs
        for units in self.params["hidden"]:
            h = keras.layers.Dense(units, activation="relu")(h)
            if self.params["dropout"] > 0:
                h = keras.layers.Dropout(self.params["dropout"])(h)
        heads = [keras.layers.Dense(1, name=f"head_{i}")(h) for i in range(n_heads)]
        self.net = keras.Model(inputs, keras.layers.Concatenate()(heads) if n_heads > 1 else heads[0], name="multi_task")
        self.extra_meta["heads"] = [self.target, *self.aux_targets]

    def _models(self) -> dict[str, Any]:
        return {"net": self.net}

    def _forward(self, x: Any) -> Any:
        return self.net(x, training=False)[:, :1]

    def _make_step(self, tf: Any) -> Callable:
        import keras

        opt = keras.optimizers.Adam(self.params["learning_rate"])
        aux_w = float(self.params["aux_weight"])
        n_aux = len(self.aux_targets)

        @tf.function(reduce_retracing=True)
        def step(x, y, mask):
            with tf.GradientTape() as tape:
                out = self.net(x, training=True)
                loss = self._primary_loss(tf, out[:, :1], y[:, :1])
                if n_aux:
                    err = tf.square(out[:, 1:] - y[:, 1:]) * mask[:, 1:]
                    per_head = tf.reduce_sum(err, axis=0) / tf.maximum(tf.reduce_sum(mask[:, 1:], axis=0), 1.0)
                    loss = loss + aux_w * tf.reduce_mean(per_head)
            opt.apply_gradients(zip(tape.gradient(loss, self.net.trainable_variables), self.net.trainable_variables))
            return loss

        return step


class VAETrainer(_KerasTrainer):
    """Variational autoencoder of the features with a regression (or logit) head on the latent mean.

    Loss = reconstruction MSE + beta · KL(q(z|x) || N(0, I)) + head_weight · target loss, where the head
    reads the latent mean so the latent features are shaped by both the features and the target.
    Prediction uses the latent mean (no sampling), hence it is deterministic.
    """

    family = "vae"

    def _build(self, n_features: int) -> None:
        import keras

        p = self.params
        latent = p["latent"]
        inputs = keras.Input(shape=(n_features,))
        h = keras.layers.Dense(p["hidden"], activation="relu")(inputs)
        self.encoder = keras.Model(inputs, [keras.layers.Dense(latent)(h), keras.layers.Dense(latent)(h)], name="encoder")
        z_in = keras.Input(shape=(latent,))
        d = keras.layers.Dense(p["hidden"], activation="relu")(z_in)
        self.decoder = keras.Model(z_in, keras.layers.Dense(n_features)(d), name="decoder")
        self.head = _dense_stack(keras, latent, [max(4, latent)], p["dropout"], 1, "head")

    def _models(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "decoder": self.decoder, "head": self.head}

    def _forward(self, x: Any) -> Any:
        mu, _ = self.encoder(x, training=False)
        return self.head(mu, training=False)

    def _make_step(self, tf: Any) -> Callable:
        import keras

        opt = keras.optimizers.Adam(self.params["learning_rate"])
        beta, head_w = float(self.params["beta"]), float(self.params["head_weight"])
        noise = tf.random.Generator.from_seed(self.seed)
        variables = [*self.encoder.trainable_variables, *self.decoder.trainable_variables, *self.head.trainable_variables]

        @tf.function(reduce_retracing=True)
        def step(x, y, mask):
            with tf.GradientTape() as tape:
                mu, logvar = self.encoder(x, training=True)
                logvar = tf.clip_by_value(logvar, -10.0, 10.0)
                z = mu + tf.exp(0.5 * logvar) * noise.normal(tf.shape(mu))
                recon = tf.reduce_mean(tf.square(self.decoder(z, training=True) - x))
                kl = -0.5 * tf.reduce_mean(tf.reduce_sum(1 + logvar - tf.square(mu) - tf.exp(logvar), axis=1))
                loss = recon + beta * kl / tf.cast(tf.shape(x)[1], tf.float32) + head_w * self._primary_loss(tf, self.head(mu, training=True), y[:, :1])
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        return step


class GANTrainer(_KerasTrainer):
    """Conditional GAN that generates the target distribution given the features (not a plain MSE net).

    Generator G(x, z) → y sample (standardised return; a logit for binary), discriminator D(x, y) →
    real/fake logit. D minimises BCE(real→1, fake→0); G minimises BCE(D(x, G(x, z))→1) plus
    supervised_weight · the point loss of its sample (the pix2pix-style anchor that keeps a conditional
    GAN stable on small, noisy data; 0 makes it purely adversarial). The point forecast is the mean of
    G(x, z_k) over a fixed bank of `n_samples` noise vectors drawn from the seed and saved with the model,
    so a row's prediction depends on nothing but its own features.
    """

    family = "gan"

    def _build(self, n_features: int) -> None:
        import keras

        p = self.params
        h = [p["hidden"], p["hidden"]]
        self.generator = _dense_stack(keras, n_features + p["noise_dim"], h, 0.0, 1, "generator")
        self.discriminator = _dense_stack(keras, n_features + 1, h, p["dropout"], 1, "discriminator")
        if not hasattr(self, "noise_bank"):
            self.noise_bank = np.random.default_rng(self.seed + 7).standard_normal((p["n_samples"], p["noise_dim"])).astype(np.float32)

    def _models(self) -> dict[str, Any]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def _forward(self, x: Any) -> Any:
        import tensorflow as tf

        outs = []
        for z in self.noise_bank:
            zz = tf.broadcast_to(tf.constant(z)[None, :], (tf.shape(x)[0], len(z)))
            out = self.generator(tf.concat([x, zz], axis=1), training=False)
            outs.append(tf.sigmoid(out) if self.task is TaskType.BINARY else out)
        mean = tf.reduce_mean(tf.stack(outs, axis=0), axis=0)
        if self.task is TaskType.BINARY:  # _predict applies the sigmoid: hand back the logit of the mean probability
            mean = tf.clip_by_value(mean, 1e-6, 1 - 1e-6)
            return tf.math.log(mean / (1 - mean))
        return mean

    def _make_step(self, tf: Any) -> Callable:
        import keras

        p = self.params
        g_opt = keras.optimizers.Adam(p["learning_rate"], beta_1=0.5)
        d_opt = keras.optimizers.Adam(p["learning_rate"], beta_1=0.5)
        noise = tf.random.Generator.from_seed(self.seed)
        sup_w, noise_dim = float(p["supervised_weight"]), int(p["noise_dim"])
        binary = self.task is TaskType.BINARY
        bce = tf.nn.sigmoid_cross_entropy_with_logits

        @tf.function(reduce_retracing=True)
        def step(x, y, mask):
            y = y[:, :1]
            z = noise.normal((tf.shape(x)[0], noise_dim))
            with tf.GradientTape() as d_tape:
                fake = self.generator(tf.concat([x, z], axis=1), training=True)
                fake_y = tf.sigmoid(fake) if binary else fake
                d_real = self.discriminator(tf.concat([x, y], axis=1), training=True)
                d_fake = self.discriminator(tf.concat([x, tf.stop_gradient(fake_y)], axis=1), training=True)
                d_loss = tf.reduce_mean(bce(labels=tf.ones_like(d_real), logits=d_real)) + tf.reduce_mean(bce(labels=tf.zeros_like(d_fake), logits=d_fake))
            d_vars = self.discriminator.trainable_variables
            d_opt.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars))
            with tf.GradientTape() as g_tape:
                fake = self.generator(tf.concat([x, z], axis=1), training=True)
                fake_y = tf.sigmoid(fake) if binary else fake
                d_fake = self.discriminator(tf.concat([x, fake_y], axis=1), training=True)
                g_loss = tf.reduce_mean(bce(labels=tf.ones_like(d_fake), logits=d_fake)) + sup_w * self._primary_loss(tf, fake, y)
            g_vars = self.generator.trainable_variables
            g_opt.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars))
            return g_loss

        return step

    def _state(self) -> dict[str, Any]:
        return {"noise_bank": self.noise_bank.tolist()}

    def _restore_state(self, state: dict[str, Any]) -> None:
        self.noise_bank = np.asarray(state["noise_bank"], dtype=np.float32)
