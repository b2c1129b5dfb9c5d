"""The supervised end-to-end reference: an encoder and a linear head trained on labels.

Self-supervised papers compare their probe against the same encoder trained end to end
with labels (Spijkervet & Burgoyne 2021 §4.3; Won, Spijkervet & Choi 2021 §9). This
model wraps the configured CPC or SimCLR model, takes its downstream representation
(``call``, the same embedding ``extract`` stores), and trains representation and a
softmax head together with cross-entropy. Its loss heads (CPC's predictors, SimCLR's
projector) get no gradient and stay at their initial values.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from cpc_tf.config import Config
from cpc_tf.models.base import ContrastiveModel


@keras.saving.register_keras_serializable(package="cpc_tf")
class SupervisedModel(ContrastiveModel):
    """``base`` representation → Dense(len(classes)) trained with cross-entropy.

    Input: ``(x, class_index)`` batches. ``call(x)`` returns the representation of the
    wrapped model, so extraction treats a supervised run like any other.
    """

    def __init__(
        self, config: dict[str, Any] | Config, classes: list[str] | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("name", "supervised")
        super().__init__(config, **kwargs)
        if not classes or len(classes) < 2:
            raise ValueError("SupervisedModel needs at least two classes")
        self.classes = [str(c) for c in classes]
        from cpc_tf.models.factory import MODEL_FAMILIES

        self.base = MODEL_FAMILIES[self.cfg.model.family](self.cfg)
        self.head = keras.layers.Dense(len(self.classes), dtype="float32", name="head")

    def example_input(self, batch: int = 2) -> Any:
        return self.base.example_input(batch)

    def example_pair(self, batch: int = 2) -> Any:
        return self.example_input(batch), tf.zeros([batch], tf.int32)

    def build(self, input_shape: Any = None) -> None:
        if not self.base.built:
            self.base.build()
        super().build(input_shape)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.base(x, training=training)

    def logits(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Class scores ``[B, classes]`` (float32)."""
        # the wrapped model directly: ``self(x)`` would re-enter ``build`` while loading
        return self.head(tf.cast(self.base(x, training=training), tf.float32))

    def contrastive_loss(self, data: Any, training: bool) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        x, y = data[0], tf.cast(data[1], tf.int32)
        logits = self.logits(x, training=training)
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y), tf.float32)
        return tf.reduce_mean(xent), {"accuracy": tf.reduce_mean(hits)}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "classes": self.classes}

    @property
    def encoder(self) -> keras.Model:
        """The wrapped model's encoder (what ``encoder.keras`` holds)."""
        return self.base.encoder
