"""A small 2-D convolutional encoder over log-mel frames, for the recommended presets.

Log-mel input lets a small network learn on a CPU budget: the spectrogram already
resolves frequency, so the convolutions only have to model local time-frequency
patterns. The layout follows the encoder of BYOL-A (Niizumi et al. 2021, §3.4): a
few blocks of Conv2D 3×3 → normalisation → ReLU → max-pooling, then the frequency
axis is folded into the channels and a dense layer maps every frame to a code.

* For CPC it returns the frame sequence ``[B, T', D]`` (the codes z_t that the
  autoregressor summarises and the predictors aim at).
* For SimCLR it pools the sequence over time into one vector h, mean + max as BYOL-A
  does (Niizumi et al. 2021, §3.4).

Normalisation is selectable: ``batch`` (BatchNorm) or ``channel``, which normalises
each frame over its own frequency and channel features and so shares no statistics
between frames or clips (the per-frame "channel norm" of Rivière et al. 2020, which
keeps CPC from reading one window's statistics out of another's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from cpc_tf.models.layers import Shape, build_chain, chain_output_shape, norm_layer, run_chain

NORMS = ("batch", "channel", "none")
INPUT_NORMS = ("example", "batch", "none")
POOLINGS = ("none", "mean", "mean_max")


def melconv_output_frames(frames: int, time_pools: Sequence[int]) -> int:
    """Frames left after the time pooling of every block ('same' padding: ceil division)."""
    for p in time_pools:
        frames = -(-int(frames) // int(p))
    return frames


@keras.saving.register_keras_serializable(package="cpc_tf")
class MelConvEncoder(keras.layers.Layer):
    """Log-mel ``[B, T, n_mels]`` → codes ``[B, T', dims[-1]]`` (or pooled ``[B, dims[-1]]``).

    Args:
        n_mels: mel bands of the input.
        filters: output channels of each Conv2D block (BYOL-A: 64, 64, 64).
        time_pools: max-pooling factor over time after each block (1 keeps the frame
            rate); their product is the encoder's frame hop in input frames.
        freq_pool: max-pooling factor over frequency after each block (BYOL-A: 2).
        dims: sizes of the per-frame dense layers after the blocks; ReLU between them,
            none after the last, whose size is the code size.
        norm: 'batch', 'channel' (each frame over its own features, see
            :class:`~cpc_tf.models.layers.FrameNormalization`) or 'none'.
        input_norm: 'example' standardises each example's log-mel over time and
            frequency (robust to the recording level), 'batch' is a BatchNorm over the
            mel bands (as PANNs' ``bn0``), 'none' leaves the dB values as they are.
        pooling: 'none' returns the sequence; 'mean' or 'mean_max' (mean + max over
            time, Niizumi et al. 2021) return one vector per example.
        dropout: dropout before each dense layer.
        synchronized_bn: cross-replica BatchNorm under a strategy.
        bn_momentum: BatchNorm moving-statistics momentum.
    """

    def __init__(
        self,
        n_mels: int = 64,
        filters: Sequence[int] = (64, 64, 64),
        time_pools: Sequence[int] = (1, 2, 1),
        freq_pool: int = 2,
        dims: Sequence[int] = (256,),
        norm: str = "batch",
        input_norm: str = "example",
        pooling: str = "none",
        dropout: float = 0.0,
        synchronized_bn: bool = False,
        bn_momentum: float = 0.9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(filters) != len(time_pools):
            raise ValueError(
                f"filters {list(filters)} and time_pools {list(time_pools)} differ in length"
            )
        for name, value, allowed in (
            ("norm", norm, NORMS),
            ("input_norm", input_norm, INPUT_NORMS),
            ("pooling", pooling, POOLINGS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not dims:
            raise ValueError("dims needs at least one layer size")
        self.n_mels = int(n_mels)
        self.filters = [int(f) for f in filters]
        self.time_pools = [int(p) for p in time_pools]
        self.freq_pool = int(freq_pool)
        self.dims = [int(d) for d in dims]
        self.norm = norm
        self.input_norm = input_norm
        self.pooling = pooling
        self.dropout = float(dropout)
        self.synchronized_bn = bool(synchronized_bn)
        self.bn_momentum = float(bn_momentum)
        dt = self.dtype_policy
        self.bn0 = (
            keras.layers.BatchNormalization(
                axis=2,
                momentum=self.bn_momentum,
                synchronized=self.synchronized_bn,
                dtype=dt,
                name="bn0",
            )
            if input_norm == "batch"
            else None
        )
        self.blocks: list[keras.layers.Layer | None] = []
        for i, (f, tp) in enumerate(zip(self.filters, self.time_pools)):
            self.blocks += [
                keras.layers.Conv2D(
                    f,
                    3,
                    padding="same",
                    use_bias=norm == "none",
                    kernel_initializer="he_uniform",
                    dtype=dt,
                    name=f"conv_{i}",
                ),
                norm_layer(
                    self.norm,
                    synchronized=self.synchronized_bn,
                    momentum=self.bn_momentum,
                    dtype=dt,
                    name=f"norm_{i}",
                ),
                keras.layers.ReLU(dtype=dt, name=f"relu_{i}"),
                keras.layers.MaxPooling2D(
                    (tp, self.freq_pool), padding="same", dtype=dt, name=f"pool_{i}"
                ),
            ]
        self.head: list[keras.layers.Layer | None] = []
        for i, d in enumerate(self.dims):
            if self.dropout > 0:
                self.head.append(keras.layers.Dropout(self.dropout, dtype=dt, name=f"dropout_{i}"))
            last = i == len(self.dims) - 1
            self.head.append(
                keras.layers.Dense(
                    d, activation=None if last else "relu", dtype=dt, name=f"dense_{i}"
                )
            )

    def _folded_shape(self, input_shape: Shape) -> Shape:
        shape = chain_output_shape(self.blocks, (input_shape[0], input_shape[1], self.n_mels, 1))
        return (shape[0], shape[1], int(shape[2]) * int(shape[3]))

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] != self.n_mels:
            raise ValueError(
                f"expected {self.n_mels} mel bands, got input shape {tuple(input_shape)}"
            )
        if self.bn0 is not None:
            self.bn0.build(tuple(input_shape))
        build_chain(self.blocks, (input_shape[0], input_shape[1], self.n_mels, 1))
        build_chain(self.head, self._folded_shape(input_shape))
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        x = self.feature_map(x, training)
        if self.pooling == "mean":
            return ops.mean(x, axis=1)
        if self.pooling == "mean_max":
            return ops.mean(x, axis=1) + ops.max(x, axis=1)
        return x

    def feature_map(self, x: Any, training: bool | None = None) -> Any:
        """The frame sequence before any pooling over time, ``[B, T', dims[-1]]``."""
        if self.input_norm == "example":
            mean = ops.mean(x, axis=[1, 2], keepdims=True)
            var = ops.mean(ops.square(x - mean), axis=[1, 2], keepdims=True)
            x = (x - mean) * ops.rsqrt(var + ops.cast(1e-5, x.dtype))
        elif self.bn0 is not None:
            x = self.bn0(x, training=training)
        x = run_chain(self.blocks, ops.expand_dims(x, -1), training)
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1], x.shape[2] * x.shape[3]))
        return run_chain(self.head, x, training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        frames = (
            None
            if input_shape[1] is None
            else melconv_output_frames(input_shape[1], self.time_pools)
        )
        if self.pooling == "none":
            return (input_shape[0], frames, self.dims[-1])
        return (input_shape[0], self.dims[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "n_mels": self.n_mels,
                "filters": self.filters,
                "time_pools": self.time_pools,
                "freq_pool": self.freq_pool,
                "dims": self.dims,
                "norm": self.norm,
                "input_norm": self.input_norm,
                "pooling": self.pooling,
                "dropout": self.dropout,
                "synchronized_bn": self.synchronized_bn,
                "bn_momentum": self.bn_momentum,
            }
        )
        return config
