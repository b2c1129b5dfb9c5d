"""The base class of cpc_tf's self-supervised models.

A :class:`ContrastiveModel` is a subclassed ``keras.Model`` built entirely from a
cpc_tf config (so ``keras.saving.load_model`` needs nothing but the registered class).
Subclasses implement :meth:`contrastive_loss` (the loss and metrics of one local
batch) and :meth:`call` (the representation used downstream). ``train_step`` is the
per-replica step: it works under ``model.fit`` on one device and is also what the
training engine runs inside ``strategy.run`` under every tf.distribute strategy.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from cpc_tf.config import Config, from_dict, to_dict
from cpc_tf.models.losses import replica_info


class ContrastiveModel(keras.Model):
    """Shared plumbing: config round trip, per-replica train and test steps."""

    def __init__(self, config: dict[str, Any] | Config, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cfg = config if isinstance(config, Config) else from_dict(config)
        self.cfg = cfg
        self._config_dict = to_dict(cfg)

    # ---- subclass API -------------------------------------------------------------
    def contrastive_loss(self, data: Any, training: bool) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Loss (scalar, float32, mean over the local batch) and a dict of metrics."""
        raise NotImplementedError

    def example_input(self, batch: int = 2) -> Any:
        """A zero batch with the shapes `call` expects (used to build the model)."""
        raise NotImplementedError

    def example_pair(self, batch: int = 2) -> Any:
        """A zero batch with the structure `contrastive_loss` expects."""
        return self.example_input(batch)

    # ---- Keras plumbing -----------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"config": self._config_dict, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ContrastiveModel:
        return cls(**config)

    def build(self, input_shape: Any = None) -> None:
        # Every sub-model is built by its registry builder; calling once creates the
        # remaining variables (predictors, heads) and fixes the model's input shape.
        if not self.built:  # type: ignore[has-type]  # set by keras.Layer
            # `call`, not `__call__`: Keras' __call__ would come back here to build.
            self.contrastive_loss(self.example_pair(), training=False)
            self.call(self.example_input(), training=False)
        self.built = True

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One optimisation step on the local batch (one replica's share).

        The loss is divided by the number of replicas before differentiation; the
        optimizer sums gradients across replicas, which then equals the gradient of
        the global-batch mean loss (a hand-made loss under tf.distribute scales by 1/replicas).
        """
        num_replicas, _ = replica_info()
        with tf.GradientTape() as tape:
            loss, metrics = self.contrastive_loss(data, training=True)
            if self.losses:  # layer regularisers, if any
                loss = loss + tf.cast(tf.add_n(self.losses), tf.float32)
            scaled = loss / float(num_replicas)
            scaled = self.optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, self.trainable_variables)
        # Variables the loss does not reach (a supervised run's unused CPC predictors or
        # SimCLR projector) have no gradient and are left out rather than fed None.
        pairs = [(g, v) for g, v in zip(grads, self.trainable_variables) if g is not None]
        self.optimizer.apply_gradients(pairs)
        return {"loss": loss, **metrics}

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        loss, metrics = self.contrastive_loss(data, training=False)
        return {"loss": loss, **metrics}
