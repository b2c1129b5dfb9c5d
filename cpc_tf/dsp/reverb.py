"""Reverb: a decaying-noise room response convolved with each example of a batch.

The CLMR reverb knobs (room size, reverberance, damping, each 0..100) are mapped to
physical settings by :func:`reverb_parameters`.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from cpc_tf.dsp.batch_ops import (
    RNG_ALG,
    as_batch,
    next_pow2,
    num_samples,
    overlap_add,
    padded_rfft,
    per_example,
)

_LN_1000 = math.log(1000.0)  # amplitude decay of 60 dB, the definition of RT60


def reverb_parameters(room_size: Any, reverberance: Any, damping: Any) -> dict[str, Any]:
    """Map the CLMR reverb knobs (each 0..100, Spijkervet & Burgoyne 2021, §3.1 item 8) to physical
    settings.

    The knobs follow sox's ``reverb`` effect, which CLMR called; the mapping is our own
    and is documented here rather than copied:

    * ``rt60`` (s, time for the tail to fall by 60 dB) = 0.1 + 1.9 * rev * (0.3 + 0.7 * room):
      more reverberance and a bigger room ring longer (0.1 s to 2.0 s).
    * ``predelay`` (s) = 0.02 * room: the first reflections arrive later in a bigger room.
    * ``wet`` (mix of the reverberant signal) = 0.1 + 0.4 * rev.
    * ``damping`` (0..1): high frequencies decay faster; the RT60 at frequency f is
      ``rt60 / (1 + 5 * damping * f / nyquist)``, a low-pass that deepens along the tail.

    Here ``room``, ``rev`` and ``damping`` are the knobs divided by 100. Works on Python
    floats and on tensors.
    """
    room, rev, damp = room_size / 100.0, reverberance / 100.0, damping / 100.0
    return {
        "rt60": 0.1 + 1.9 * rev * (0.3 + 0.7 * room),
        "predelay": 0.02 * room,
        "wet": 0.1 + 0.4 * rev,
        "damping": damp,
    }


def reverb_impulse_response(
    room_size: Any, reverberance: Any, damping: Any, sample_rate: int, seed: tf.Tensor, length: int
) -> tf.Tensor:
    """A decaying-noise room response, ``[B, length]``, unit energy per example.

    Built in the STFT domain (about 20 ms frames, half-overlapping Hann windows):
    zero-mean, unit-variance uniform noise in the real and imaginary part of every
    (frame, bin), scaled by ``exp(-ln(1000) * (t - predelay) / rt60(f))`` so the tail
    falls 60 dB in ``rt60(f)`` and high bins fall faster when damped (see
    :func:`reverb_parameters`), then an inverse STFT (each output sample sums hundreds
    of such terms, so it is Gaussian in effect; uniform draws are cheaper). Nothing
    arrives before the pre-delay.
    """
    params = reverb_parameters(
        tf.cast(room_size, tf.float32),
        tf.cast(reverberance, tf.float32),
        tf.cast(damping, tf.float32),
    )
    rt60 = tf.reshape(params["rt60"], [-1, 1, 1])
    predelay = tf.reshape(params["predelay"], [-1, 1])
    damp = tf.reshape(params["damping"], [-1, 1, 1])
    batch = tf.shape(rt60)[0]
    n_fft = max(64, 1 << math.ceil(math.log2(0.02 * sample_rate)))
    hop = n_fft // 2
    bins = n_fft // 2 + 1
    frames = int(length) // hop + 1
    centre_s = (tf.range(frames, dtype=tf.float32) * hop + n_fft / 2) / float(sample_rate)
    rel_freq = tf.range(bins, dtype=tf.float32) / float(bins - 1)  # f / nyquist
    rt60_f = rt60 / (1.0 + 5.0 * damp * rel_freq[None, None, :])  # [B, 1, K]
    elapsed = tf.maximum(centre_s[None, :, None] - predelay[:, :, None], 0.0)  # [B, F, 1]
    envelope = tf.exp(-_LN_1000 * elapsed / rt60_f)  # [B, F, K]
    noise = tf.random.stateless_uniform(
        tf.stack([batch, frames, bins, 2]),
        seed=seed,
        minval=-math.sqrt(3.0),
        maxval=math.sqrt(3.0),
        alg=RNG_ALG,
    )
    spectrum = tf.complex(noise[..., 0] * envelope, noise[..., 1] * envelope)
    window = tf.signal.hann_window(n_fft, periodic=True)
    ir = overlap_add(tf.signal.irfft(spectrum, fft_length=[n_fft]) * window, hop)
    ir = ir[:, :length]
    t = tf.range(length, dtype=tf.float32)[None, :] / float(sample_rate)
    ir = tf.where(t >= predelay, ir, tf.zeros_like(ir))
    energy = tf.reduce_sum(tf.square(ir), axis=-1, keepdims=True)
    return ir * tf.math.rsqrt(tf.maximum(energy, 1e-20))


def reverb(
    x: tf.Tensor,
    room_size: Any,
    reverberance: Any,
    damping: Any,
    sample_rate: int,
    seed: tf.Tensor,
    *,
    ir_seconds: float | None = None,
) -> tf.Tensor:
    """Reverberate each example: ``(1 - wet) * x + wet * (x * h)`` with ``h`` from
    :func:`reverb_impulse_response` (Spijkervet & Burgoyne 2021, §3.1, item 8).

    The convolution is an FFT product with a power-of-two size large enough to avoid
    circular wrap; the tail past the end of the clip is dropped, so the length is
    unchanged. ``ir_seconds`` (static) bounds the response length; by default it covers
    the longest RT60 plus pre-delay that the knobs allow.
    """
    x = as_batch(x)
    n = num_samples(x)
    room = per_example(room_size, x)
    rev = per_example(reverberance, x)
    damp = per_example(damping, x)
    if ir_seconds is None:
        top = reverb_parameters(100.0, 100.0, 0.0)
        ir_seconds = top["rt60"] + top["predelay"]
    length = max(1, int(math.ceil(float(ir_seconds) * sample_rate)))
    ir = reverb_impulse_response(room, rev, damp, sample_rate, seed, length)
    nfft = next_pow2(n + length - 1)
    wet_signal = tf.signal.irfft(padded_rfft(x, nfft) * padded_rfft(ir, nfft), fft_length=[nfft])[
        :, :n
    ]
    wet = reverb_parameters(room, rev, damp)["wet"][:, None]
    return (1.0 - wet) * x + wet * wet_signal
