"""Contrastive Predictive Coding (Bajorath et al. 2021 §2.2; van den Oord et al. 2018).

Two input layouts, decided by the encoder:

* **Window mode** (``conv1d``, ``mel2d``; Bajorath et al. 2021 §2.2.1): a crop of T+k
  windows ``[B, T+k, W]`` is encoded window by window (each window exactly once: T+k
  encoder calls per example, not the seed's T + k·N) into codes z_1..z_{T+k}; the
  autoregressor reads the first T codes.
* **Sequence mode** (``frame``, ``melconv``; Spijkervet & Burgoyne 2021 §3.5): the
  whole waveform ``[B, n]`` becomes a code sequence z_1..z_L and the autoregressor
  reads all of it.

What is predicted and against which negatives is configurable:

* ``model.prediction``: from c_T only (``last``, the seed's scheme) or from every
  context position c_t (``all``, van den Oord et al. 2018), each predicting the next
  k codes through the linear maps W_k;
* ``model.negatives``: the other clips' codes at the same position (``same_step``,
  the seed's in-batch negatives), or any code of the global batch, other positions of
  the same clip included (``batch``, Rivière et al. 2020), all of them or
  ``model.num_negatives`` drawn per prediction, plus an optional queue of codes from
  earlier batches (``model.queue_size``).

``call`` returns the downstream representation (``eval.cpc_representation``): c_T, the
time-mean of the contexts c_t, or the time-mean of the codes z_t.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from cpc_tf.config import Config
from cpc_tf.models.base import ContrastiveModel
from cpc_tf.models.frontends import build_frontend
from cpc_tf.models.heads import NegativeQueue
from cpc_tf.models.losses import gather_across_replicas, info_nce, info_nce_windows, step_weights
from cpc_tf.models.registry import (
    build_autoregressor,
    build_encoder,
    build_predictors,
    cpc_prediction,
    cpc_representation,
    encoder_output_dim,
    is_sequence_encoder,
)

REPRESENTATIONS = ("c_last", "c_mean", "z_mean")


@keras.saving.register_keras_serializable(package="cpc_tf")
class CPC(ContrastiveModel):
    """CPC with any registered encoder and autoregressor.

    Input: ``[B, T+k, W]`` windows (window mode) or ``[B, n]`` waveform (sequence
    mode). ``call`` returns the representation ``[B, dim]`` chosen by
    ``eval.cpc_representation`` (see :meth:`representation`).
    """

    def __init__(self, config: dict[str, Any] | Config, **kwargs: Any) -> None:
        kwargs.setdefault("name", "cpc")
        super().__init__(config, **kwargs)
        cfg = self.cfg
        m = cfg.model
        self.frame_mode = is_sequence_encoder(cfg)
        self.context_steps = m.context_steps
        self.predict_steps = m.predict_steps
        self.prediction = cpc_prediction(cfg)
        self.negatives = m.negatives
        self.num_negatives = m.num_negatives
        self.default_representation = cpc_representation(cfg)
        self.frontend = build_frontend(cfg)
        self.encoder = build_encoder(cfg)
        self.autoregressor = build_autoregressor(cfg)
        self.predictors = build_predictors(cfg)
        self.queue = (
            NegativeQueue(m.queue_size, encoder_output_dim(cfg), name="negative_queue")
            if m.negatives == "batch" and m.queue_size
            else None
        )
        self._step_weighting = m.step_weighting
        self._seed = cfg.data.seed

    # ------------------------------------------------------------------ shapes
    def example_input(self, batch: int = 2) -> tf.Tensor:
        if self.frame_mode:
            return tf.zeros([batch, self.cfg.crop_samples])
        return tf.zeros([batch, self.cfg.num_windows, self.cfg.window_samples])

    def build(self, input_shape: Any = None) -> None:
        if self.queue is not None and not self.queue.built:
            self.queue.build()
        super().build(input_shape)

    # ----------------------------------------------------------------- forward
    def encode_windows(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """``[B, S, W]`` windows → ``[B, S, z_dim]`` codes, every window encoded once."""
        batch, steps = tf.shape(x)[0], tf.shape(x)[1]
        if self.frontend is not None:
            x = self.frontend(x)  # [B, S, frames, n_mels]
        flat = tf.reshape(x, tf.concat([[batch * steps], tf.shape(x)[2:]], axis=0))
        z = self.encoder(flat, training=training)
        return tf.reshape(z, tf.stack([batch, steps, tf.shape(z)[-1]]))

    def codes_and_contexts(
        self, x: tf.Tensor, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The codes z ``[B, S, D]`` and the contexts c.

        c is ``[B, P, c_dim]`` (one per context position) for a sequence autoregressor
        such as the GRU, or ``[B, c_dim]`` for the seed's Transformer, which folds the
        T windows into one vector (Bajorath et al. 2021, Table 3).
        """
        if self.frame_mode:
            feats = self.frontend(x) if self.frontend is not None else x
            z = self.encoder(feats, training=training)  # [B, L, D]
            return z, self.autoregressor(z, training=training)
        z = self.encode_windows(x, training=training)  # [B, T+k, D]
        return z, self.autoregressor(z[:, : self.context_steps], training=training)

    def representation(
        self, x: tf.Tensor, kind: str | None = None, training: bool = False
    ) -> tf.Tensor:
        """The downstream embedding of a crop.

        ``kind`` (default ``eval.cpc_representation`` of the model's config): ``c_last``
        (c_T, Bajorath et al. 2021 §2.3), ``c_mean`` (the contexts averaged over time,
        as CLMR's CPC, Spijkervet & Burgoyne 2021 §3.5) or ``z_mean`` (the codes
        averaged over time).
        """
        kind = kind or self.default_representation
        if kind not in REPRESENTATIONS:
            raise ValueError(
                f"unknown CPC representation {kind!r}; expected one of {', '.join(REPRESENTATIONS)}"
            )
        z, c = self.codes_and_contexts(x, training=training)
        if kind == "z_mean":
            return tf.reduce_mean(z, axis=1)
        if len(c.shape) == 2:
            if kind == "c_mean":
                raise ValueError(
                    "c_mean needs a context per position; this autoregressor gives only c_T"
                )
            return c
        return tf.reduce_mean(c, axis=1) if kind == "c_mean" else c[:, -1]

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.representation(x, training=training)

    # -------------------------------------------------------------------- loss
    def _draw_seed(self) -> tf.Tensor:
        step = self.optimizer.iterations if getattr(self, "optimizer", None) is not None else 0
        return tf.stack([tf.constant(self._seed, tf.int64), tf.cast(step, tf.int64)])

    def contrastive_loss(self, data: Any, training: bool) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        x = data[0] if isinstance(data, (tuple, list)) else data
        k = self.predict_steps
        z, c = self.codes_and_contexts(x, training)
        if self.prediction == "last":
            c_last = c if len(c.shape) == 2 else c[:, -1]
            preds = self.predictors(c_last)[:, None]  # [B, 1, k, D]
            first = tf.shape(z)[1] - k - 1  # c_T sits at window T-1
        else:
            preds = self.predictors(c)  # [B, P, k, D]
            first = 0
        if self.negatives == "batch":
            queue, count = (
                (None, None) if self.queue is None else (self.queue.codes, self.queue.count)
            )
            loss_k, acc_k = info_nce_windows(
                preds,
                z,
                num_negatives=self.num_negatives,
                queue=queue,
                queue_count=count,
                seed=self._draw_seed(),
                first_position=first,
            )
            if self.queue is not None and training:
                self.queue.push(
                    tf.reshape(gather_across_replicas(tf.cast(z, tf.float32)), [-1, z.shape[-1]])
                )
        else:
            loss_k, acc_k = self._same_step(preds, z, first)
        loss = tf.reduce_sum(step_weights(k, self._step_weighting) * loss_k)
        metrics = {"cpc_acc": tf.reduce_mean(acc_k)}
        for i in range(k):
            metrics[f"cpc_acc_k{i + 1}"] = acc_k[i]
        return loss, metrics

    def _same_step(self, preds: tf.Tensor, z: tf.Tensor, first: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """In-batch negatives at the same position (Bajorath et al. 2021 §2.2.5), per step k."""
        positions, windows = tf.shape(preds)[1], tf.shape(z)[1]
        losses, accs = [], []
        for step in range(1, self.predict_steps + 1):
            n = tf.minimum(positions, windows - first - step)
            p = tf.transpose(preds[:, :n, step - 1], [1, 0, 2])  # [n, B, D]
            t = tf.transpose(z[:, first + step : first + step + n], [1, 0, 2])  # [n, B, D]
            loss_s, acc_s = info_nce(p, t)
            losses.append(tf.reduce_mean(loss_s))
            accs.append(tf.reduce_mean(acc_s))
        return tf.stack(losses), tf.stack(accs)
