"""Shape helpers shared by the batched augmentation transforms.

Every transform works on a whole batch ``x: float32 [B, n]``; these helpers check that
shape, broadcast per-example parameters to ``[B]``, pick FFT sizes and overlap-add
frames. The random-number algorithm of every augmentation draw is named here too.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import tensorflow as tf

Length: TypeAlias = "int | tf.Tensor"

# Philox, named so the stream does not hang on a device's default choice. Note that an
# XLA-compiled graph (jit_compile) draws a different stream from the same seed than
# eager or plain graph execution: reproducibility holds within one execution mode.
RNG_ALG = "philox"


# ------------------------------------------------------------------ shape helpers
def as_batch(x: Any) -> tf.Tensor:
    """``x`` as a float32 tensor; ValueError unless its rank is 2 (``[batch, samples]``) or
    unknown.
    """
    x = tf.convert_to_tensor(x)
    if x.dtype != tf.float32:
        x = tf.cast(x, tf.float32)
    if x.shape.rank is not None and x.shape.rank != 2:
        raise ValueError(f"expected audio of shape [batch, samples], got shape {x.shape}")
    return x


def num_samples(x: tf.Tensor) -> Length:
    """Samples per example: a Python int when static, else a scalar int32 tensor."""
    n = x.shape[-1]
    return int(n) if n is not None else tf.shape(x)[-1]


def next_pow2(n: Length) -> Length:
    """Smallest power of two >= n (FFT sizes stay fast: radix-2)."""
    if isinstance(n, int):
        return 1 << max(0, (n - 1).bit_length())
    n = tf.cast(n, tf.float64)
    exponent = tf.math.ceil(tf.math.log(n) / math.log(2.0) - 1e-9)
    return tf.cast(tf.pow(tf.constant(2.0, tf.float64), exponent), tf.int32)


def padded_rfft(x: tf.Tensor, nfft: Length) -> tf.Tensor:
    """Rfft of ``x`` zero-padded to ``nfft`` (padded here: the op itself refuses an empty batch)."""
    return tf.signal.rfft(tf.pad(x, [[0, 0], [0, nfft - num_samples(x)]]), fft_length=[nfft])


def per_example(value: Any, x: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """Broadcast a scalar or [B] parameter to shape [B]."""
    value = tf.cast(tf.convert_to_tensor(value), dtype)
    return tf.broadcast_to(value, tf.shape(x)[:1]) if value.shape.rank == 0 else value


def overlap_add(frames: tf.Tensor, hop: int) -> tf.Tensor:
    """Overlap-add ``[B, J, N]`` frames at ``hop``; a few shifted slice-sums when N is a
    multiple of hop (faster than tf.signal.overlap_and_add on CPU), else the library op.
    """
    length = frames.shape[-1]
    if length is None or length % hop:
        return tf.signal.overlap_and_add(frames, hop)
    parts = length // hop
    batch, count = tf.shape(frames)[0], tf.shape(frames)[1]
    pieces = tf.reshape(frames, tf.stack([batch, count, parts, hop]))
    pieces = tf.pad(pieces, [[0, 0], [parts - 1, parts - 1], [0, 0], [0, 0]])
    total = pieces[:, parts - 1 : parts - 1 + count + parts - 1, 0]
    for q in range(1, parts):
        total += pieces[:, parts - 1 - q : parts - 1 - q + count + parts - 1, q]
    return tf.reshape(total, tf.stack([batch, (count + parts - 1) * hop]))
