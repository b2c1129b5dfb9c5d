"""Heads on top of the representation: the SimCLR projector and CPC's predictors W_k."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from cpc_tf.models.layers import Shape, build_chain, run_chain


@keras.saving.register_keras_serializable(package="cpc_tf")
class ProjectionHead(keras.layers.Layer):
    """SimCLR projector g_proj (Spijkervet & Burgoyne 2021, §3.3): z = W2 ReLU(W1 h), both without
    bias.

    ``dims`` lists the layer sizes (default [512, 128]); every layer but the last is
    followed by ReLU. With h ∈ R^512: 512·512 + 512·128 = 327,680 parameters.
    """

    def __init__(
        self, dims: Sequence[int] = (512, 128), use_bias: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.dims = [int(d) for d in dims]
        if not self.dims:
            raise ValueError("ProjectionHead needs at least one layer size")
        self.use_bias = bool(use_bias)
        dt = self.dtype_policy
        self.chain: list[keras.layers.Layer] = []
        for i, d in enumerate(self.dims):
            self.chain.append(
                keras.layers.Dense(d, use_bias=self.use_bias, dtype=dt, name=f"dense_{i}")
            )
            if i < len(self.dims) - 1:
                self.chain.append(keras.layers.ReLU(dtype=dt, name=f"relu_{i}"))

    def build(self, input_shape: Shape) -> None:
        build_chain(self.chain, tuple(input_shape))
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        return run_chain(self.chain, x, training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape[:-1]) + (self.dims[-1],)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"dims": self.dims, "use_bias": self.use_bias})
        return config


@keras.saving.register_keras_serializable(package="cpc_tf")
class Predictors(keras.layers.Layer):
    """CPC's k linear predictors (Bajorath et al. 2021, §2.2.4): ẑ_{T+k} = W_k c_T, one matrix per
    step.

    Input c ``[..., c_dim]`` (``[B, c_dim]`` or ``[B, L, c_dim]``); output
    ``[..., k, units]`` with ``units`` the encoder's code size. The maps are linear with
    no bias by default, as in the seed's equation; k·c_dim·z_dim parameters.
    """

    def __init__(
        self, steps: int = 3, units: int = 256, use_bias: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.steps = int(steps)
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.projections = [
            keras.layers.Dense(
                self.units, use_bias=self.use_bias, dtype=self.dtype_policy, name=f"w_{k + 1}"
            )
            for k in range(self.steps)
        ]

    def build(self, input_shape: Shape) -> None:
        for layer in self.projections:
            layer.build(tuple(input_shape))
        self.built = True

    def call(self, c: Any) -> Any:
        return ops.stack([layer(c) for layer in self.projections], axis=-2)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape[:-1]) + (self.steps, self.units)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"steps": self.steps, "units": self.units, "use_bias": self.use_bias})
        return config


@keras.saving.register_keras_serializable(package="cpc_tf")
class NegativeQueue(keras.layers.Layer):
    """Codes of earlier batches kept as extra CPC negatives (He et al. 2020, MoCo).

    A first-in first-out buffer of ``size`` code vectors: the newest codes sit at the
    top, ``count`` says how many rows hold codes (the rest are still empty after a
    start). Both are non-trainable weights, so checkpoints and ``--resume`` carry the
    queue along. Under a strategy every replica pushes the same gathered codes, and the
    variables are written once (``only_first_replica``).
    """

    def __init__(self, size: int, dim: int, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.size = int(size)
        self.dim = int(dim)
        if self.size < 1 or self.dim < 1:
            raise ValueError(
                f"NegativeQueue needs a positive size and dim, got {self.size} and {self.dim}"
            )

    def build(self, input_shape: Shape | None = None) -> None:
        self.codes = self.add_weight(
            shape=(self.size, self.dim),
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="codes",
        )
        self.count = self.add_weight(
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="count",
        )
        self.built = True

    def push(self, codes: Any) -> None:
        """Put ``codes [N, dim]`` on top; the oldest rows beyond ``size`` are dropped."""
        import tensorflow as tf

        codes = tf.stop_gradient(tf.cast(codes, tf.float32))
        merged = tf.concat([codes, tf.convert_to_tensor(self.codes)], axis=0)[: self.size]
        self.codes.assign(merged)
        self.count.assign(
            tf.minimum(tf.convert_to_tensor(self.count) + tf.shape(codes)[0], self.size)
        )

    def call(self, x: Any = None) -> Any:
        return self.codes

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"size": self.size, "dim": self.dim})
        return config
