"""Augmentations of log-mel spectrograms for contrastive learning, as batched TensorFlow ops.

These are the spectrogram-domain transforms of BYOL-A (Niizumi et al. 2021, §3.3), the
recipe that makes a contrastive model learn from few clips, in the order BYOL-A uses:

* **mixup** with another clip of the batch, in the power domain ("log-mixup-exp"):
  ``x ← dB((1 − λ)·power(x) + λ·power(x_other))`` with λ ~ U[0, ratio] (ratio 0.4);
  the other clip acts as background noise;
* **random resized crop**: the spectrogram is placed in a canvas ``virtual`` times its
  size, a region of U[scale] × its time and frequency extent is cropped at a random
  place and resized back (bilinear), which stretches time and pitch a little and
  shifts them;
* **gain**: a random level change, U[gain_min_db, gain_max_db], added to the dB values.

Inputs are ``[B, frames, n_mels]`` log-mel values in dB (10·log10 power), e.g. from
:func:`cpc_tf.dsp.frontend.log_mel_spectrogram`. Every draw comes from stateless random
ops keyed by an explicit ``[2]`` seed, split once per transform, with an independent
draw per example, so the chain runs in a model on any device and a seed fixes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from cpc_tf.config import AugmentConfig

__all__ = ["SpectrogramAugment", "augment_spectrogram", "log_mixup_exp", "random_resized_crop"]

_DB = 10.0 / math.log(10.0)  # dB per natural-log unit of power


def _uniform(seed: tf.Tensor, batch: tf.Tensor, lo: float, hi: float) -> tf.Tensor:
    return tf.random.stateless_uniform([batch], seed, minval=lo, maxval=hi, dtype=tf.float32)


def _fires(seed: tf.Tensor, batch: tf.Tensor, p: float) -> tf.Tensor:
    return tf.random.stateless_uniform([batch], seed, dtype=tf.float32) < p


def log_mixup_exp(x: tf.Tensor, other: tf.Tensor, ratio: tf.Tensor) -> tf.Tensor:
    """Mix two dB spectrograms in the power domain: ``dB((1-λ)·10^(x/10) + λ·10^(o/10))``.

    ``ratio`` is λ per example ``[B]``; the log-sum-exp form never overflows.
    """
    lam = tf.reshape(tf.cast(ratio, x.dtype), [-1, 1, 1])
    a = x / _DB + tf.math.log(tf.maximum(1.0 - lam, 1e-12))
    b = other / _DB + tf.math.log(tf.maximum(lam, 1e-12))
    return _DB * tf.reduce_logsumexp(tf.stack([a, b]), axis=0)


def random_resized_crop(
    x: tf.Tensor,
    seed: tf.Tensor,
    time_scale: tuple[float, float] = (0.6, 1.5),
    freq_scale: tuple[float, float] = (0.6, 1.5),
    virtual: float = 1.5,
) -> tf.Tensor:
    """BYOL-A's random resized crop of ``[B, T, F]`` spectrograms (Niizumi et al. 2021, §3.3).

    The spectrogram sits in the middle of a canvas of ``virtual``·T × ``virtual``·F,
    padded with each example's minimum (silence). A box of U[time_scale]·T ×
    U[freq_scale]·F (at most the canvas) is placed uniformly at random inside the
    canvas and resized back to T × F with bilinear interpolation.
    """
    x = tf.convert_to_tensor(x)
    batch = tf.shape(x)[0]
    frames, bands = x.shape[1], x.shape[2]
    if frames is None or bands is None:
        raise ValueError("random_resized_crop needs a static number of frames and mel bands")
    pad_t = int(round(frames * (virtual - 1.0) / 2.0))
    pad_f = int(round(bands * (virtual - 1.0) / 2.0))
    floor = tf.reduce_min(x, axis=[1, 2], keepdims=True)
    canvas = tf.pad(x - floor, [[0, 0], [pad_t, pad_t], [pad_f, pad_f]]) + floor
    height, width = frames + 2 * pad_t, bands + 2 * pad_f
    seeds = tf.random.experimental.stateless_split(seed, 4)
    h = tf.minimum(_uniform(seeds[0], batch, *time_scale) * frames / height, 1.0)
    w = tf.minimum(_uniform(seeds[1], batch, *freq_scale) * bands / width, 1.0)
    top = _uniform(seeds[2], batch, 0.0, 1.0) * (1.0 - h)
    left = _uniform(seeds[3], batch, 0.0, 1.0) * (1.0 - w)
    # crop_and_resize maps box corners onto pixel centres: y = y1·(H-1) ... y2·(H-1).
    boxes = tf.stack([top, left, top + h, left + w], axis=1)
    out = tf.image.crop_and_resize(
        canvas[..., None], boxes, tf.range(batch), [frames, bands], method="bilinear"
    )
    return out[..., 0]


def _to_config(augment: AugmentConfig | Mapping[str, Any] | None) -> AugmentConfig:
    if augment is None:
        return AugmentConfig()
    if isinstance(augment, AugmentConfig):
        return augment
    return AugmentConfig(**dict(augment))


def augment_spectrogram(x: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """The spectrogram chain (mixup → random resized crop → gain), each with its own p.

    Mixup partners are the batch rolled by a random shift of 1..B-1, so a clip is never
    mixed with itself (with a batch of one, mixup is skipped).
    """
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    batch = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    if cfg.mixup_p > 0 and cfg.mixup_ratio > 0:
        shift = tf.random.stateless_uniform(
            [], seeds[0], minval=1, maxval=tf.maximum(batch, 2), dtype=tf.int32
        )
        other = tf.roll(x, shift, axis=0)
        lam = _uniform(seeds[1], batch, 0.0, cfg.mixup_ratio)
        lam = tf.where(_fires(seeds[2], batch, cfg.mixup_p) & (batch > 1), lam, 0.0)
        x = log_mixup_exp(x, other, lam)
    if cfg.rrc_p > 0:
        cropped = random_resized_crop(
            x,
            seeds[3],
            (cfg.rrc_time_scale[0], cfg.rrc_time_scale[1]),
            (cfg.rrc_freq_scale[0], cfg.rrc_freq_scale[1]),
            cfg.rrc_virtual_scale,
        )
        x = tf.where(tf.reshape(_fires(seeds[4], batch, cfg.rrc_p), [-1, 1, 1]), cropped, x)
    if cfg.gain_p > 0:
        gain = _uniform(seeds[5], batch, cfg.gain_min_db, cfg.gain_max_db)
        gain = tf.where(_fires(seeds[6], batch, cfg.gain_p), gain, 0.0)
        x = x + gain[:, None, None]
    return x


@keras.saving.register_keras_serializable(package="cpc_tf")
class SpectrogramAugment(keras.layers.Layer):
    """The spectrogram chain as a layer; identity unless ``training``.

    Each call draws a fresh seed from a ``keras.random.SeedGenerator`` (its state is a
    weight, so it is checkpointed and a resumed run continues the stream).
    """

    def __init__(
        self, augment: AugmentConfig | Mapping[str, Any] | None = None, seed: int = 0, **kwargs: Any
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.augment = _to_config(augment)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="seed_generator")
        self.built = True  # no weights beyond the seed generator's state

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training:
            return x
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        return augment_spectrogram(x, self.augment, seed)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        import dataclasses

        config = super().get_config()
        config.update({"augment": dataclasses.asdict(self.augment), "seed": self.seed})
        return config
