"""SimCLR for raw music audio, as in CLMR (Spijkervet & Burgoyne 2021, §3).

Two views of the same clip (independent crops, each with its own draw of the
augmentation chain) are encoded by SampleCNN or TUNe into h, projected to z by a small
MLP, and trained with NT-Xent against the other 2(N-1) views of the global batch. The
representation evaluated downstream is h, not z (Spijkervet & Burgoyne 2021, §3.4).

The augmentation chain runs either in the input pipeline (the views arrive augmented)
or inside the model (``augment.where: model``), where it runs on the accelerator.

With the ``melconv`` encoder the model computes a log-mel spectrogram first (its
``frontend``), and the spectrogram chain of BYOL-A (``augment.chain: spectrogram``:
mixup, random resized crop, gain; Niizumi et al. 2021 §3.3) runs on it inside the
model, between the frontend and the encoder.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from cpc_tf.config import Config
from cpc_tf.models.base import ContrastiveModel
from cpc_tf.models.frontends import build_augmenter, build_frontend
from cpc_tf.models.losses import nt_xent
from cpc_tf.models.registry import build_encoder, build_projector


@keras.saving.register_keras_serializable(package="cpc_tf")
class SimCLR(ContrastiveModel):
    """Encoder + projection head + NT-Xent. Input: a pair of views ``([B, n], [B, n])``.

    ``call`` on a single ``[B, n]`` batch returns h ``[B, rep_dim]``.
    """

    def __init__(self, config: dict[str, Any] | Config, **kwargs: Any) -> None:
        kwargs.setdefault("name", "simclr")
        super().__init__(config, **kwargs)
        cfg = self.cfg
        self.temperature = cfg.model.temperature
        self.frontend = build_frontend(cfg)
        self.encoder = build_encoder(cfg)
        self.projector = build_projector(cfg)
        self.spectrogram_augment = cfg.augment.chain == "spectrogram"
        self.augmenter = (
            build_augmenter(cfg)
            if cfg.augment.enabled and (cfg.augment.where == "model" or self.spectrogram_augment)
            else None
        )

    def example_input(self, batch: int = 2) -> tf.Tensor:
        return tf.zeros([batch, self.cfg.crop_samples])

    def example_pair(self, batch: int = 2) -> tuple[tf.Tensor, tf.Tensor]:
        return self.example_input(batch), self.example_input(batch)

    def _features(self, x: tf.Tensor) -> tf.Tensor:
        return self.frontend(x) if self.frontend is not None else x

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.encoder(self._features(x), training=training)

    def project(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Z = g(f(x)), the projected view used by the loss."""
        return self.projector(self(x, training=training), training=training)

    def contrastive_loss(self, data: Any, training: bool) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        view1, view2 = data[0], data[1]
        augmenter = self.augmenter if training else None
        if augmenter is not None and not self.spectrogram_augment:
            view1 = augmenter(view1, training=True)
            view2 = augmenter(view2, training=True)
        batch = tf.shape(view1)[0]
        # One encoder pass over both views (as the TF2 SimCLR code does).
        feats = self._features(tf.concat([view1, view2], axis=0))
        if augmenter is not None and self.spectrogram_augment:
            feats = tf.concat(
                [
                    augmenter(feats[:batch], training=True),
                    augmenter(feats[batch:], training=True),
                ],
                axis=0,
            )
        z = self.projector(self.encoder(feats, training=training), training=training)
        loss, acc = nt_xent(z[:batch], z[batch:], self.temperature)
        return loss, {"simclr_acc": acc}

    def representation(self, x: tf.Tensor) -> tf.Tensor:
        """The downstream embedding h."""
        return self(x, training=False)
