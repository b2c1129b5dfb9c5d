"""The simple CLMR transforms as batched TensorFlow ops.

Polarity inversion, white Gaussian noise, gain, the Butterworth low- or high-pass
filter and the delay, each with explicit per-example parameters so that its behaviour
can be checked against ground truth. The chain that draws the parameters is
:func:`cpc_tf.dsp.augment.augment_batch`.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from cpc_tf.config import AugmentConfig
from cpc_tf.dsp.batch_ops import RNG_ALG, as_batch, next_pow2, num_samples, padded_rfft, per_example


# ------------------------------------------------------------------ the transforms
def polarity(x: tf.Tensor) -> tf.Tensor:
    """Invert the polarity: x -> -x (Spijkervet & Burgoyne 2021, §3.1, item 2)."""
    return -as_batch(x)


def add_noise(x: tf.Tensor, snr_db: Any, seed: tf.Tensor) -> tf.Tensor:
    """Add white Gaussian noise at ``snr_db`` relative to each example's own mean power.

    Seed 000 §3.1 (item 3) uses 80 dB. ``snr_db`` is a scalar or one value per example.
    A silent example stays silent (its noise power is zero).
    """
    x = as_batch(x)
    snr = per_example(snr_db, x)
    power = tf.reduce_mean(tf.square(x), axis=-1)
    std = tf.sqrt(power * tf.pow(10.0, -snr / 10.0))
    noise = tf.random.stateless_normal(tf.shape(x), seed=seed, dtype=tf.float32, alg=RNG_ALG)
    return x + std[:, None] * noise


def apply_gain(x: tf.Tensor, gain_db: Any) -> tf.Tensor:
    """Scale each example by ``10 ** (gain_db / 20)`` (Spijkervet & Burgoyne 2021, §3.1, item 4)."""
    x = as_batch(x)
    return x * tf.pow(10.0, per_example(gain_db, x) / 20.0)[:, None]


def butterworth_gain(
    freqs_hz: Any, cutoff_hz: Any, order: int, sample_rate: int, highpass: Any
) -> tf.Tensor:
    """Magnitude of a digital Butterworth filter, ``[B, K]`` for freqs ``[K]``, cutoff ``[B]``.

    This is the exact magnitude of the bilinear-transform design that
    ``scipy.signal.butter(order, cutoff, btype, fs=sample_rate)`` returns:
    ``|H|^2 = 1 / (1 + (tan(w/2) / tan(wc/2)) ** (2 * order))`` for a low-pass and the
    reciprocal ratio for a high-pass. It is evaluated in the log domain so that high
    orders neither overflow nor divide by zero at DC or Nyquist. ``highpass`` is a bool
    or a ``[B]`` bool tensor.
    """
    freqs = tf.cast(tf.convert_to_tensor(freqs_hz), tf.float32)[None, :]
    cutoff = tf.reshape(tf.cast(cutoff_hz, tf.float32), [-1, 1])
    half_w = math.pi * freqs / float(sample_rate)  # w / 2
    half_wc = math.pi * cutoff / float(sample_rate)  # wc / 2
    tiny = 1e-30
    # tan(w/2) / tan(wc/2) = sin(w/2) cos(wc/2) / (cos(w/2) sin(wc/2))
    log_ratio = tf.math.log(
        tf.maximum(tf.abs(tf.sin(half_w) * tf.cos(half_wc)), tiny)
    ) - tf.math.log(tf.maximum(tf.abs(tf.cos(half_w) * tf.sin(half_wc)), tiny))
    z = 2.0 * float(order) * log_ratio
    lowpass_gain = tf.exp(-0.5 * tf.nn.softplus(z))
    highpass_gain = tf.exp(-0.5 * tf.nn.softplus(-z))
    highpass = tf.reshape(tf.cast(highpass, tf.bool), [-1, 1])
    return tf.where(highpass, highpass_gain, lowpass_gain)


def butterworth_filter(
    x: tf.Tensor,
    cutoff_hz: Any,
    kind: Any,
    order: int,
    sample_rate: int,
    pad_samples: int | None = None,
) -> tf.Tensor:
    """Zero-phase Butterworth low- or high-pass applied in the FFT domain.

    Seed 000 §3.1 (item 5). ``kind`` is ``"lowpass"``, ``"highpass"`` or a ``[B]`` bool
    tensor that is true where the example gets a high-pass. The signal is zero-padded
    by ``pad_samples`` (default a quarter second) before the FFT, and the FFT size is
    rounded up to a power of two, so the filter's impulse response does not wrap
    around from the end of the clip onto its start.
    """
    x = as_batch(x)
    n = num_samples(x)
    if isinstance(kind, str):
        if kind not in ("lowpass", "highpass"):
            raise ValueError(f"kind must be 'lowpass' or 'highpass', got {kind!r}")
        highpass = per_example(kind == "highpass", x, tf.bool)
    else:
        highpass = per_example(kind, x, tf.bool)
    pad = int(pad_samples) if pad_samples is not None else max(64, sample_rate // 4)
    nfft = next_pow2(n + pad)
    spectrum = padded_rfft(x, nfft)
    freqs = tf.range(nfft // 2 + 1, dtype=tf.float32) * (
        float(sample_rate) / tf.cast(nfft, tf.float32)
    )
    gain = butterworth_gain(freqs, per_example(cutoff_hz, x), order, sample_rate, highpass)
    y = tf.signal.irfft(spectrum * tf.cast(gain, tf.complex64), fft_length=[nfft])
    return y[:, :n]


def delay_choices_samples(cfg: AugmentConfig, sample_rate: int) -> list[int]:
    """The delays CLMR draws from: min..max ms inclusive in steps, as whole samples."""
    count = int(math.floor((cfg.delay_max_ms - cfg.delay_min_ms) / cfg.delay_step_ms + 1e-9)) + 1
    return [
        int(math.floor((cfg.delay_min_ms + i * cfg.delay_step_ms) * sample_rate / 1000.0 + 1e-9))
        for i in range(count)
    ]


def delay(x: tf.Tensor, delay_samples: Any, mix: float = 0.5) -> tf.Tensor:
    """Echo: ``(x + mix * x delayed by d samples) / 2``, length unchanged (Spijkervet & Burgoyne
    2021, §3.1, item 6).
    """
    x = as_batch(x)
    d = per_example(delay_samples, x, tf.int32)
    idx = tf.range(num_samples(x), dtype=tf.int32)[None, :] - d[:, None]
    delayed = tf.gather(x, tf.maximum(idx, 0), batch_dims=1)
    delayed = tf.where(idx >= 0, delayed, tf.zeros_like(delayed))
    return (x + float(mix) * delayed) / 2.0
