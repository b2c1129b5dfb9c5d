"""Small reusable Keras layers shared by the encoders and autoregressors.

Every layer here is registered under the ``cpc_tf`` package and has a complete
``get_config``, so a model that contains it reloads with ``keras.saving.load_model``
and nothing else. Sub-layers inherit the parent's dtype policy, which keeps them
usable under a mixed-precision policy (``mixed_float16`` / ``mixed_bfloat16``).

Composite layers build their children explicitly in ``build`` (shape by shape), so
the variables exist as soon as the layer is built and ``count_params`` works without
running any data through the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from cpc_tf.models.fastops import FusedBatchNormalization, MatmulConv1D

Shape = tuple[Any, ...]

ACTIVATIONS = ("relu", "leaky_relu", "linear")
NORMS = ("batch", "channel", "layer", "none")


def activation_layer(
    name: str, dtype: Any = None, layer_name: str | None = None
) -> keras.layers.Layer | None:
    """A Keras activation layer for ``name`` ('relu' | 'leaky_relu' | 'linear').

    'leaky_relu' uses Keras' default negative slope (0.3), which is what the seed's
    tf.keras code got from ``LeakyReLU()`` (Bajorath et al. 2021, Tables 1-3). 'linear' returns
    None.
    """
    if name == "relu":
        return keras.layers.ReLU(dtype=dtype, name=layer_name)
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(dtype=dtype, name=layer_name)
    if name == "linear":
        return None
    raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")


def build_chain(layers: Sequence[keras.layers.Layer | None], input_shape: Shape) -> Shape:
    """Build ``layers`` one after another starting from ``input_shape``; return the output shape."""
    shape = tuple(input_shape)
    for layer in layers:
        if layer is None:
            continue
        if not layer.built:
            layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def run_chain(
    layers: Sequence[keras.layers.Layer | None], x: Any, training: bool | None = None
) -> Any:
    """Apply ``layers`` in order (``training`` is passed on; Keras drops it where unused)."""
    for layer in layers:
        if layer is not None:
            x = layer(x, training=training)
    return x


def chain_output_shape(layers: Sequence[keras.layers.Layer | None], input_shape: Shape) -> Shape:
    """The output shape of a chain of already-configured layers, without building them."""
    shape = tuple(input_shape)
    for layer in layers:
        if layer is not None:
            shape = tuple(layer.compute_output_shape(shape))
    return shape


@keras.saving.register_keras_serializable(package="cpc_tf")
class FrameNormalization(keras.layers.Layer):
    """Normalises each time step of ``[B, T, ...features]`` over its own features.

    The mean and variance of step t are taken over every axis after the time axis (the
    channels of a sequence, or frequency and channels of a 2-D feature map), so nothing
    is shared between time steps or examples. A learned scale and offset per channel
    follow. This is the "channel norm" of Rivière et al. 2020 (CPC_audio), which keeps
    CPC from reading one window's statistics out of another's.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape: Shape) -> None:
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")
        self.built = True

    def call(self, x: Any) -> Any:
        axes = list(range(2, len(x.shape)))
        mean = ops.mean(x, axis=axes, keepdims=True)
        var = ops.mean(ops.square(x - mean), axis=axes, keepdims=True)
        x = (x - mean) * ops.rsqrt(var + ops.cast(self.epsilon, x.dtype))
        return x * ops.cast(self.gamma, x.dtype) + ops.cast(self.beta, x.dtype)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


def norm_layer(
    kind: str,
    *,
    synchronized: bool = False,
    momentum: float = 0.9,
    dtype: Any = None,
    name: str | None = None,
) -> keras.layers.Layer | None:
    """The normalisation after a convolution: 'batch', 'channel', 'layer' or 'none' (None).

    'batch' is BatchNorm (the fast :class:`~cpc_tf.models.fastops.FusedBatchNormalization`),
    whose statistics mix every window and clip of the batch; 'channel' normalises each
    time step over its features (:class:`FrameNormalization`); 'layer' normalises each
    example over all its time steps and channels (a one-group GroupNorm).
    """
    if kind == "batch":
        return FusedBatchNormalization(
            synchronized=synchronized, momentum=momentum, dtype=dtype, name=name
        )
    if kind == "channel":
        return FrameNormalization(dtype=dtype, name=name)
    if kind == "layer":
        return keras.layers.GroupNormalization(groups=1, epsilon=1e-5, dtype=dtype, name=name)
    if kind == "none":
        return None
    raise ValueError(f"unknown normalisation {kind!r}; expected one of {', '.join(NORMS)}")


@keras.saving.register_keras_serializable(package="cpc_tf")
class ConvBlock(keras.layers.Layer):
    """Conv1D → (normalisation) → activation: the unit every raw-audio encoder here is made of.

    The convolution and BatchNorm are the drop-in faster versions of
    :mod:`cpc_tf.models.fastops` (same variables and results as Keras' layers).

    Used for Bajorath et al. 2021, Table 1 (strided, valid padding, LeakyReLU), SampleCNN
    (Spijkervet & Burgoyne 2021 §3.3: kernel 3, BN, ReLU), TUNe (Vélez Vásquez & Burgoyne 2022,
    §3.1: kernel 3, stride 1, same padding, BN, ReLU) and CLMR's CPC encoder (Spijkervet &
    Burgoyne 2021, §3.5, explicit zero padding, ReLU).

    Args:
        filters: output channels.
        kernel_size: convolution width.
        strides: convolution stride.
        padding: Keras padding mode of the convolution, 'valid' or 'same'.
        explicit_padding: zeros added on both sides before the convolution (PyTorch-style
            ``padding=p``); 0 for none.
        batch_norm: add a BatchNormalization after the convolution (when `norm` is not given).
        norm: the normalisation after the convolution, one of :data:`NORMS` (see
            :func:`norm_layer`); overrides `batch_norm`.
        synchronized: cross-replica BatchNorm (``BatchNormalization(synchronized=True)``).
        bn_momentum: moving-statistics momentum of the BatchNorm (Keras convention; 0.9
            equals PyTorch's default momentum=0.1).
        activation: 'relu', 'leaky_relu' or 'linear'.
        kernel_initializer: initializer of the convolution kernel ('he_uniform' is the He
            initialisation of seeds 000 and 003).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        padding: str = "same",
        explicit_padding: int = 0,
        batch_norm: bool = True,
        synchronized: bool = False,
        activation: str = "relu",
        kernel_initializer: Any = "glorot_uniform",
        bn_momentum: float = 0.9,
        norm: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.norm = norm if norm is not None else ("batch" if batch_norm else "none")
        if self.norm not in NORMS:
            raise ValueError(
                f"unknown normalisation {self.norm!r}; expected one of {', '.join(NORMS)}"
            )
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = padding
        self.explicit_padding = int(explicit_padding)
        self.batch_norm = self.norm == "batch"
        self.synchronized = bool(synchronized)
        self.bn_momentum = float(bn_momentum)
        self.activation = activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        dt = self.dtype_policy
        self.pad = (
            keras.layers.ZeroPadding1D(self.explicit_padding, dtype=dt, name="pad")
            if self.explicit_padding
            else None
        )
        self.conv = MatmulConv1D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            kernel_initializer=keras.initializers.get(kernel_initializer),
            dtype=dt,
            name="conv",
        )
        # BatchNorm keeps its historical name "bn" so that older weight files still load.
        self.bn = norm_layer(
            self.norm,
            synchronized=self.synchronized,
            momentum=self.bn_momentum,
            dtype=dt,
            name="bn" if self.norm == "batch" else "norm",
        )
        self.act = activation_layer(activation, dt, "act")

    def _chain(self) -> list[keras.layers.Layer | None]:
        return [self.pad, self.conv, self.bn, self.act]

    def build(self, input_shape: Shape) -> None:
        build_chain(self._chain(), input_shape)
        self.built = True

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return chain_output_shape([self.pad, self.conv], input_shape)

    def call(self, x: Any, training: bool | None = None) -> Any:
        return run_chain(self._chain(), x, training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "explicit_padding": self.explicit_padding,
                "batch_norm": self.batch_norm,
                "norm": self.norm,
                "synchronized": self.synchronized,
                "bn_momentum": self.bn_momentum,
                "activation": self.activation,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


def sinusoidal_table(positions: int, depth: int) -> np.ndarray:
    """The fixed sinusoidal position table of the TensorFlow Transformer tutorial.

    ``angle[p, i] = p / 10000^(2*(i//2)/depth)``; sine on even feature indices, cosine
    on odd ones (interleaved, as in the tutorial the seed adapted, Bajorath et al. 2021, §2.2.3).
    Returns float32 ``[positions, depth]``.
    """
    pos = np.arange(positions, dtype=np.float64)[:, None]
    i = np.arange(depth, dtype=np.float64)[None, :]
    angles = pos / np.power(10000.0, (2.0 * np.floor(i / 2.0)) / float(depth))
    table = np.where(np.arange(depth)[None, :] % 2 == 0, np.sin(angles), np.cos(angles))
    return table.astype(np.float32)


@keras.saving.register_keras_serializable(package="cpc_tf")
class SinusoidalPositionalEncoding(keras.layers.Layer):
    """Adds the fixed sinusoidal position code to ``[B, T, D]`` inputs (no weights).

    Args:
        max_positions: longest sequence supported (Bajorath et al. 2021, Table 3: T+k).
    """

    def __init__(self, max_positions: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_positions = int(max_positions)
        self._table: np.ndarray | None = None

    def build(self, input_shape: Shape) -> None:
        depth = input_shape[-1]
        if depth is None:
            raise ValueError("SinusoidalPositionalEncoding needs a known feature size")
        steps = input_shape[-2]
        if steps is not None and steps > self.max_positions:
            raise ValueError(
                f"sequence of {steps} steps is longer than max_positions={self.max_positions}"
            )
        self._table = sinusoidal_table(self.max_positions, int(depth))
        self.built = True

    def call(self, x: Any) -> Any:
        steps = ops.shape(x)[-2]
        table = ops.convert_to_tensor(self._table, dtype=x.dtype)
        return x + table[None, :steps, :]

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"max_positions": self.max_positions})
        return config


@keras.saving.register_keras_serializable(package="cpc_tf")
class PadToMatch(keras.layers.Layer):
    """Zero-pads ``x`` at the end of axis 1 to the length of ``reference`` (no weights).

    A stride-3 transposed convolution gives ``3 * floor(L / 3)`` steps, which falls up to
    two steps short of the skip connection it is concatenated with (length L) when L is
    not a multiple of 3. With the paper's 59,049 = 3^10 samples nothing is padded.
    Inputs: ``[x, reference]``; ``x`` must not be longer than ``reference``.
    """

    def call(self, inputs: Sequence[Any]) -> Any:
        x, reference = inputs
        missing = ops.shape(reference)[1] - ops.shape(x)[1]
        return ops.pad(x, [[0, 0], [0, missing], [0, 0]])

    def compute_output_shape(self, input_shapes: Sequence[Shape]) -> Shape:
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], x_shape[2])


def conv_output_length(
    length: int, kernel: int, stride: int, padding: str = "valid", pad: int = 0
) -> int:
    """Output steps of a 1-D convolution on ``length`` steps (after ``pad`` zeros per side)."""
    length = length + 2 * pad
    if padding == "same":
        return int(math.ceil(length / stride))
    if length < kernel:
        return 0
    return (length - kernel) // stride + 1
