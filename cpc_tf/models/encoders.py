"""Encoders g_enc: audio (or a log-mel patch) in, one vector or a frame sequence out.

* :class:`Conv1DEncoder` – Bajorath et al. 2021, §2.2.2 / Table 1: one CPC window of raw audio → z.
* :class:`Mel2DEncoder` – Bajorath et al. 2021, §2.2.2 / Table 2: one 64×64 log-mel patch → z.
* :class:`FrameEncoder` – CLMR's CPC encoder (Spijkervet & Burgoyne 2021, §3.5): waveform → frame
  sequence.
* :class:`SampleCNN` – CLMR's SimCLR encoder (Spijkervet & Burgoyne 2021, §3.3, Won, Spijkervet &
  Choi 2021, §15.2): 59,049 samples → h ∈ R^512.

The TUNe encoder lives in :mod:`cpc_tf.models.tunet`. All classes are Keras layers
with explicit ``build`` (so the variables exist once built) and a complete
``get_config``; the registry wraps them into functional ``keras.Model`` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from cpc_tf.models.layers import (
    ConvBlock,
    Shape,
    activation_layer,
    build_chain,
    chain_output_shape,
    conv_output_length,
    run_chain,
)


def _ints(values: Sequence[int]) -> list[int]:
    return [int(v) for v in values]


# ------------------------------------------------------------------------ Conv1D
@keras.saving.register_keras_serializable(package="cpc_tf")
class Conv1DEncoder(keras.layers.Layer):
    """Seed 004 Table 1: raw-audio window ``[B, W]`` → z ``[B, z_dim]``.

    Five Conv1D layers (strides [5,4,2,2,2], kernels [10,8,4,4,4], 512 filters, valid
    padding), each followed by BatchNorm and LeakyReLU; then Flatten → Dropout(0.1) →
    Dense(512) + LeakyReLU → Dropout(0.1) → Dense(256) (Bajorath et al. 2021, §2.2.2 "two stacks of
    dropout with a rate of 0.1 and fully connected layers").

    On the default 588-sample window the convolutions leave a single step, and the
    encoder has exactly 5,654,784 parameters (Keras count, BN moving statistics
    included), the number stated in Bajorath et al. 2021, §2.2.2.
    """

    def __init__(
        self,
        z_dim: int = 256,
        strides: Sequence[int] = (5, 4, 2, 2, 2),
        kernels: Sequence[int] = (10, 8, 4, 4, 4),
        filters: int = 512,
        hidden_units: int = 512,
        dropout: float = 0.1,
        synchronized_bn: bool = False,
        bn_momentum: float = 0.9,
        norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(strides) != len(kernels):
            raise ValueError(
                f"strides {list(strides)} and kernels {list(kernels)} differ in length"
            )
        self.z_dim = int(z_dim)
        self.strides = _ints(strides)
        self.kernels = _ints(kernels)
        self.filters = int(filters)
        self.hidden_units = int(hidden_units)
        self.dropout = float(dropout)
        self.synchronized_bn = bool(synchronized_bn)
        self.bn_momentum = float(bn_momentum)
        self.norm = norm
        dt = self.dtype_policy
        self.blocks = [
            ConvBlock(
                self.filters,
                k,
                strides=s,
                padding="valid",
                norm=self.norm,
                synchronized=self.synchronized_bn,
                bn_momentum=self.bn_momentum,
                activation="leaky_relu",
                dtype=dt,
                name=f"conv_block_{i}",
            )
            for i, (s, k) in enumerate(zip(self.strides, self.kernels))
        ]
        self.head = [
            keras.layers.Flatten(dtype=dt, name="flatten"),
            keras.layers.Dropout(self.dropout, dtype=dt, name="dropout_0"),
            keras.layers.Dense(self.hidden_units, dtype=dt, name="dense_0"),
            activation_layer("leaky_relu", dt, "dense_0_act"),
            keras.layers.Dropout(self.dropout, dtype=dt, name="dropout_1"),
            keras.layers.Dense(self.z_dim, dtype=dt, name="dense_1"),
        ]

    def output_steps(self, window: int) -> int:
        """Steps left after the convolutions for a ``window``-sample input (0 = too short)."""
        for s, k in zip(self.strides, self.kernels):
            window = conv_output_length(window, k, s, "valid")
        return window

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] is not None and self.output_steps(int(input_shape[-1])) < 1:
            raise ValueError(
                f"a window of {input_shape[-1]} samples is too short for strides "
                f"{self.strides} and kernels {self.kernels}"
            )
        shape = build_chain(self.blocks, tuple(input_shape) + (1,))
        build_chain(self.head, shape)
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        x = ops.expand_dims(x, -1)
        x = run_chain(self.blocks, x, training)
        return run_chain(self.head, x, training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.z_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "z_dim": self.z_dim,
                "strides": self.strides,
                "kernels": self.kernels,
                "filters": self.filters,
                "hidden_units": self.hidden_units,
                "dropout": self.dropout,
                "synchronized_bn": self.synchronized_bn,
                "bn_momentum": self.bn_momentum,
                "norm": self.norm,
            }
        )
        return config


# ------------------------------------------------------------------------ Mel2D
@keras.saving.register_keras_serializable(package="cpc_tf")
class Mel2DEncoder(keras.layers.Layer):
    """Seed 004 Table 2: log-mel patch ``[B, frames, n_mels]`` → z ``[B, z_dim]``.

    Four Conv2D blocks (kernel 3, stride 2, filters [32, 64, 256, 512], same padding),
    each Conv2D → SpatialDropout2D → LeakyReLU; then Flatten → Dense(512) + LeakyReLU +
    Dropout → Dense(256) + LeakyReLU (Bajorath et al. 2021, §2.2.2: "An output dense layer with
    leaky ReLU outputs the embedding"). The channel axis is added inside.

    On a 64×64 patch: 4×4×512 features after the convolutions and exactly 5,672,832
    parameters, as stated in Bajorath et al. 2021, §2.2.2. The log-mel frontend is not part of it.
    """

    def __init__(
        self,
        z_dim: int = 256,
        filters: Sequence[int] = (32, 64, 256, 512),
        kernel: int = 3,
        stride: int = 2,
        hidden_units: int = 512,
        dropout: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.z_dim = int(z_dim)
        self.filters = _ints(filters)
        self.kernel = int(kernel)
        self.stride = int(stride)
        self.hidden_units = int(hidden_units)
        self.dropout = float(dropout)
        dt = self.dtype_policy
        self.convs: list[keras.layers.Layer | None] = []
        for i, f in enumerate(self.filters):
            self.convs += [
                keras.layers.Conv2D(
                    f, self.kernel, strides=self.stride, padding="same", dtype=dt, name=f"conv_{i}"
                ),
                keras.layers.SpatialDropout2D(self.dropout, dtype=dt, name=f"spatial_dropout_{i}"),
                activation_layer("leaky_relu", dt, f"conv_{i}_act"),
            ]
        self.head = [
            keras.layers.Flatten(dtype=dt, name="flatten"),
            keras.layers.Dense(self.hidden_units, dtype=dt, name="dense_0"),
            activation_layer("leaky_relu", dt, "dense_0_act"),
            keras.layers.Dropout(self.dropout, dtype=dt, name="dropout"),
            keras.layers.Dense(self.z_dim, dtype=dt, name="dense_1"),
            activation_layer("leaky_relu", dt, "dense_1_act"),
        ]

    def build(self, input_shape: Shape) -> None:
        shape = build_chain(self.convs, tuple(input_shape) + (1,))
        build_chain(self.head, shape)
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        x = ops.expand_dims(x, -1)
        x = run_chain(self.convs, x, training)
        return run_chain(self.head, x, training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.z_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "z_dim": self.z_dim,
                "filters": self.filters,
                "kernel": self.kernel,
                "stride": self.stride,
                "hidden_units": self.hidden_units,
                "dropout": self.dropout,
            }
        )
        return config


# ------------------------------------------------------------------------ Frame
def frame_encoder_length(
    samples: int, strides: Sequence[int], kernels: Sequence[int], paddings: Sequence[int]
) -> int:
    """Frames the :class:`FrameEncoder` gives for ``samples`` input samples (0 = too short).

    With CLMR's settings (strides [5,3,2,2,2,2,2], kernels [10,6,4,4,4,2,2], zero padding
    [2,2,2,2,1,1,1]; total hop 480) a 59,049-sample crop gives 124 frames.
    """
    length = int(samples)
    for s, k, p in zip(strides, kernels, paddings):
        length = conv_output_length(length, int(k), int(s), "valid", int(p))
        if length < 1:
            return 0
    return length


@keras.saving.register_keras_serializable(package="cpc_tf")
class FrameEncoder(keras.layers.Layer):
    """CLMR's CPC encoder (Spijkervet & Burgoyne 2021, §3.5): waveform ``[B, n]`` → frames
    ``[B, L, filters]``.

    Seven Conv1D layers with 512 filters, kernels [10,6,4,4,4,2,2] and strides
    [5,3,2,2,2,2,2]. The paper gives no normalisation or padding; CLMR's code zero-pads
    by [2,2,2,2,1,1,1] and follows each convolution with ReLU only, which is the default
    here (``norm`` adds a normalisation before each ReLU: 'batch', or CPC_audio's
    per-frame 'channel' norm). He initialisation as for all of CLMR's convolutions
    (Spijkervet & Burgoyne 2021, §3.7). 5,775,872 parameters with the defaults. ``dim`` > 0 adds a
    linear map of every frame to ``dim`` features. Use :meth:`output_length` (or
    :func:`frame_encoder_length`) for L.
    """

    def __init__(
        self,
        strides: Sequence[int] = (5, 3, 2, 2, 2, 2, 2),
        kernels: Sequence[int] = (10, 6, 4, 4, 4, 2, 2),
        filters: int = 512,
        paddings: Sequence[int] = (2, 2, 2, 2, 1, 1, 1),
        batch_norm: bool = False,
        synchronized_bn: bool = False,
        bn_momentum: float = 0.9,
        norm: str | None = None,
        dim: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not len(strides) == len(kernels) == len(paddings):
            raise ValueError(
                f"strides {list(strides)}, kernels {list(kernels)} and paddings "
                f"{list(paddings)} must have the same length"
            )
        self.strides = _ints(strides)
        self.kernels = _ints(kernels)
        self.filters = int(filters)
        self.paddings = _ints(paddings)
        self.norm = norm if norm is not None else ("batch" if batch_norm else "none")
        self.batch_norm = self.norm == "batch"
        self.synchronized_bn = bool(synchronized_bn)
        self.bn_momentum = float(bn_momentum)
        self.dim = int(dim)
        dt = self.dtype_policy
        self.blocks: list[keras.layers.Layer] = [
            ConvBlock(
                self.filters,
                k,
                strides=s,
                padding="valid",
                explicit_padding=p,
                norm=self.norm,
                synchronized=self.synchronized_bn,
                bn_momentum=self.bn_momentum,
                activation="relu",
                kernel_initializer="he_uniform",
                dtype=dt,
                name=f"conv_block_{i}",
            )
            for i, (s, k, p) in enumerate(zip(self.strides, self.kernels, self.paddings))
        ]
        if self.dim:
            self.blocks.append(keras.layers.Dense(self.dim, dtype=dt, name="projection"))

    def output_length(self, samples: int) -> int:
        """Frames for an input of ``samples`` samples (0 if it is too short)."""
        return frame_encoder_length(samples, self.strides, self.kernels, self.paddings)

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] is not None and self.output_length(int(input_shape[-1])) < 1:
            raise ValueError(f"{input_shape[-1]} samples are too short for the frame encoder")
        build_chain(self.blocks, tuple(input_shape) + (1,))
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        return run_chain(self.blocks, ops.expand_dims(x, -1), training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        steps = input_shape[-1]
        return (
            input_shape[0],
            None if steps is None else self.output_length(int(steps)),
            self.dim or self.filters,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "strides": self.strides,
                "kernels": self.kernels,
                "filters": self.filters,
                "paddings": self.paddings,
                "batch_norm": self.batch_norm,
                "norm": self.norm,
                "dim": self.dim,
                "synchronized_bn": self.synchronized_bn,
                "bn_momentum": self.bn_momentum,
            }
        )
        return config


# ---------------------------------------------------------------------- SampleCNN
def samplecnn_output_steps(samples: int, n_blocks: int) -> int:
    """Steps left at the end of SampleCNN for ``samples`` inputs (0 = too short).

    The stem (kernel 3, stride 3, valid) and each of the ``n_blocks`` max-pools divide
    the length by 3 (floor): 59,049 = 3^10 samples with nine blocks leave exactly 1.
    """
    length = conv_output_length(int(samples), 3, 3, "valid")
    for _ in range(n_blocks):
        length //= 3
    return max(length, 0)


@keras.saving.register_keras_serializable(package="cpc_tf")
class SampleCNN(keras.layers.Layer):
    """SampleCNN as used by CLMR (Spijkervet & Burgoyne 2021, §3.3; code in Won, Spijkervet & Choi
    2021, §15.2): ``[B, n]`` → h.

    Stem Conv1D(128, kernel 3, stride 3, valid) + BN + ReLU; nine blocks of Conv1D
    (kernel 3, stride 1, same) + BN + ReLU + MaxPool(3) with channels
    128,128,256,256,256,256,256,256,512; a final Conv1D(512, kernel 3, same) + BN + ReLU;
    Flatten. He (uniform, fan-in) initialisation of every convolution, as CLMR's
    ``kaiming_uniform_`` (Spijkervet & Burgoyne 2021, §3.7). The classifier layer is removed
    (Spijkervet & Burgoyne 2021, §3.3).

    On 59,049 samples one step of 512 channels is left, so h ∈ R^512; the encoder has
    exactly 2,368,512 trainable parameters (2,374,400 with BN moving statistics).
    Longer inputs leave more steps and Flatten gives ``steps × 512`` features.
    """

    def __init__(
        self,
        channels: Sequence[int] = (128, 128, 256, 256, 256, 256, 256, 256, 512),
        stem_filters: int = 128,
        out_filters: int = 512,
        synchronized_bn: bool = False,
        bn_momentum: float = 0.9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.channels = _ints(channels)
        self.stem_filters = int(stem_filters)
        self.out_filters = int(out_filters)
        self.synchronized_bn = bool(synchronized_bn)
        self.bn_momentum = float(bn_momentum)
        dt = self.dtype_policy

        def block(filters: int, name: str, strides: int = 1, padding: str = "same") -> ConvBlock:
            return ConvBlock(
                filters,
                3,
                strides=strides,
                padding=padding,
                batch_norm=True,
                synchronized=self.synchronized_bn,
                bn_momentum=self.bn_momentum,
                activation="relu",
                kernel_initializer="he_uniform",
                dtype=dt,
                name=name,
            )

        self.layers_: list[keras.layers.Layer] = [
            block(self.stem_filters, "stem", strides=3, padding="valid")
        ]
        for i, c in enumerate(self.channels):
            self.layers_.append(block(c, f"block_{i}"))
            self.layers_.append(keras.layers.MaxPooling1D(3, dtype=dt, name=f"pool_{i}"))
        self.layers_.append(block(self.out_filters, "out"))
        self.layers_.append(keras.layers.Flatten(dtype=dt, name="flatten"))

    def output_steps(self, samples: int) -> int:
        """Steps before Flatten for ``samples`` inputs (0 = too short)."""
        return samplecnn_output_steps(samples, len(self.channels))

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] is not None and self.output_steps(int(input_shape[-1])) < 1:
            raise ValueError(
                f"{input_shape[-1]} samples are too short for SampleCNN with "
                f"{len(self.channels)} blocks (need at least {3 ** (len(self.channels) + 1)})"
            )
        build_chain(self.layers_, tuple(input_shape) + (1,))
        self.built = True

    def feature_map(self, x: Any, training: bool | None = None) -> Any:
        """The activations before Flatten, ``[B, steps, out_filters]`` (one step on 3^10
        samples).
        """
        return run_chain(self.layers_[:-1], ops.expand_dims(x, -1), training)

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.layers_[-1](self.feature_map(x, training))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return chain_output_shape(self.layers_, tuple(input_shape) + (1,))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "stem_filters": self.stem_filters,
                "out_filters": self.out_filters,
                "synchronized_bn": self.synchronized_bn,
                "bn_momentum": self.bn_momentum,
            }
        )
        return config
