"""Autoregressors g_ar: a sequence of codes z_1..z_T in, the context c out.

* :class:`GRUAutoregressor` – the CPC default (Bajorath et al. 2021, §2.2.3): a GRU with c_dim units
  that returns its last state (or every state, for CLMR's frame-level CPC, Spijkervet & Burgoyne
  2021, §3.5).
* :class:`TransformerAutoregressor` – Bajorath et al. 2021, §2.2.3 / Table 3: the encoder half of
  the TensorFlow Transformer tutorial without its embedding layer, then dense layers that
  fold the T per-step outputs into one context vector.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from cpc_tf.models.layers import (
    Shape,
    SinusoidalPositionalEncoding,
    activation_layer,
    build_chain,
    run_chain,
)


@keras.saving.register_keras_serializable(package="cpc_tf")
class GRUAutoregressor(keras.layers.Layer):
    """Keras GRU over ``[B, T, z]``: c ``[B, units]`` (last state) or ``[B, T, units]``.

    With ``reset_after=True`` (Keras' and cuDNN's GRU variant) and z 256 → c 512 it has
    3·(256·512 + 512·512 + 2·512) = 1,182,720 parameters.

    Args:
        units: c_dim (Bajorath et al. 2021, §2.2.3: 512; CLMR's CPC: 256).
        reset_after: apply the reset gate after the recurrent matmul.
        return_sequences: return every context c_t (frame-level CPC) instead of c_T.
    """

    def __init__(
        self,
        units: int = 512,
        reset_after: bool = True,
        return_sequences: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.reset_after = bool(reset_after)
        self.return_sequences = bool(return_sequences)
        self.gru = keras.layers.GRU(
            self.units,
            reset_after=self.reset_after,
            return_sequences=self.return_sequences,
            dtype=self.dtype_policy,
            name="gru",
        )

    def build(self, input_shape: Shape) -> None:
        self.gru.build(tuple(input_shape))
        self.built = True

    def call(self, x: Any, training: bool | None = None, mask: Any = None) -> Any:
        return self.gru(x, training=training, mask=mask)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if self.return_sequences:
            return (input_shape[0], input_shape[1], self.units)
        return (input_shape[0], self.units)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "reset_after": self.reset_after,
                "return_sequences": self.return_sequences,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="cpc_tf")
class TransformerEncoderLayer(keras.layers.Layer):
    """One post-LayerNorm Transformer encoder layer (the TensorFlow tutorial's ``EncoderLayer``).

    ``y = LN(x + Dropout(MHA(x, x)))``; ``out = LN(y + Dropout(FFN(y)))`` with
    ``FFN = Dense(dff, relu) → Dense(d_model)`` and LayerNorm epsilon 1e-6. Each of the
    ``num_heads`` heads has d_model / num_heads dimensions, as in the tutorial's depth
    split (Bajorath et al. 2021, Table 3: 2 heads over d_model 256, i.e. key_dim 128).

    Args:
        d_model: feature size of the input and output.
        num_heads: attention heads.
        dff: hidden width of the feed-forward network.
        dropout: dropout rate after attention and after the FFN.
        epsilon: LayerNorm epsilon.
    """

    def __init__(
        self,
        d_model: int = 256,
        num_heads: int = 2,
        dff: int = 100,
        dropout: float = 0.1,
        epsilon: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.d_model = int(d_model)
        self.num_heads = int(num_heads)
        self.dff = int(dff)
        self.dropout = float(dropout)
        self.epsilon = float(epsilon)
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}"
            )
        dt = self.dtype_policy
        self.mha = keras.layers.MultiHeadAttention(
            self.num_heads, key_dim=self.d_model // self.num_heads, dtype=dt, name="mha"
        )
        self.ffn = [
            keras.layers.Dense(self.dff, activation="relu", dtype=dt, name="ffn_0"),
            keras.layers.Dense(self.d_model, dtype=dt, name="ffn_1"),
        ]
        self.drop_attn = keras.layers.Dropout(self.dropout, dtype=dt, name="dropout_attn")
        self.drop_ffn = keras.layers.Dropout(self.dropout, dtype=dt, name="dropout_ffn")
        self.norm_attn = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=dt, name="norm_attn"
        )
        self.norm_ffn = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=dt, name="norm_ffn"
        )

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] != self.d_model:
            raise ValueError(
                f"input feature size {input_shape[-1]} differs from d_model={self.d_model} "
                "(the residual connections need them equal)"
            )
        shape = tuple(input_shape)
        self.mha.build(shape, shape)
        build_chain(self.ffn, shape)
        for layer in (self.drop_attn, self.drop_ffn, self.norm_attn, self.norm_ffn):
            layer.build(shape)
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        attn = self.mha(x, x, training=training)
        x = self.norm_attn(x + self.drop_attn(attn, training=training))
        ffn = run_chain(self.ffn, x, training)
        return self.norm_ffn(x + self.drop_ffn(ffn, training=training))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "d_model": self.d_model,
                "num_heads": self.num_heads,
                "dff": self.dff,
                "dropout": self.dropout,
                "epsilon": self.epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="cpc_tf")
class TransformerAutoregressor(keras.layers.Layer):
    """Seed 004 Table 3: ``[B, T, d_model]`` codes → c ``[B, output_dim]``.

    As in the tutorial's ``Encoder`` minus the embedding (Bajorath et al. 2021, §2.2.3): scale the
    input by sqrt(d_model), add the sinusoidal position code (``max_positions`` = T+k),
    dropout, then ``num_layers`` post-LN encoder layers. The T outputs are folded into
    one vector by Flatten (T·d_model) → Dropout → Dense(dense_units) + LeakyReLU →
    Dropout → Dense(output_dim). T must be known when the layer is built.

    With T=27, d_model 256, 2 layers, 2 heads, dff 100, dense 100 and c_dim 512:
    2·315,748 (encoder layers) + 691,300 + 51,712 = 1,374,508 parameters, the number
    given in Bajorath et al. 2021, §2.2.3.
    """

    def __init__(
        self,
        d_model: int = 256,
        output_dim: int = 512,
        max_positions: int = 30,
        num_layers: int = 2,
        num_heads: int = 2,
        dff: int = 100,
        dense_units: int = 100,
        dropout: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.d_model = int(d_model)
        self.output_dim = int(output_dim)
        self.max_positions = int(max_positions)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.dff = int(dff)
        self.dense_units = int(dense_units)
        self.dropout = float(dropout)
        dt = self.dtype_policy
        self.positions = SinusoidalPositionalEncoding(
            self.max_positions, dtype=dt, name="positions"
        )
        self.input_dropout = keras.layers.Dropout(self.dropout, dtype=dt, name="input_dropout")
        self.encoder_layers = [
            TransformerEncoderLayer(
                self.d_model,
                self.num_heads,
                self.dff,
                self.dropout,
                dtype=dt,
                name=f"encoder_layer_{i}",
            )
            for i in range(self.num_layers)
        ]
        self.head = [
            keras.layers.Flatten(dtype=dt, name="flatten"),
            keras.layers.Dropout(self.dropout, dtype=dt, name="dropout_0"),
            keras.layers.Dense(self.dense_units, dtype=dt, name="dense_0"),
            activation_layer("leaky_relu", dt, "dense_0_act"),
            keras.layers.Dropout(self.dropout, dtype=dt, name="dropout_1"),
            keras.layers.Dense(self.output_dim, dtype=dt, name="dense_1"),
        ]

    def build(self, input_shape: Shape) -> None:
        steps = input_shape[-2]
        if steps is None:
            raise ValueError("TransformerAutoregressor needs a fixed number of steps T (Flatten)")
        if int(steps) > self.max_positions:
            raise ValueError(f"{steps} steps exceed max_positions={self.max_positions}")
        shape = build_chain(
            [self.positions, self.input_dropout, *self.encoder_layers], tuple(input_shape)
        )
        build_chain(self.head, shape)
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        x = x * ops.cast(math.sqrt(float(self.d_model)), x.dtype)
        x = self.positions(x)
        x = self.input_dropout(x, training=training)
        x = run_chain(self.encoder_layers, x, training)
        return run_chain(self.head, x, training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.output_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "d_model": self.d_model,
                "output_dim": self.output_dim,
                "max_positions": self.max_positions,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "dff": self.dff,
                "dense_units": self.dense_units,
                "dropout": self.dropout,
            }
        )
        return config
