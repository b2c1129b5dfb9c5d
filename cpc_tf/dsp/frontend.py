"""Log-mel front end: spectrograms and the square patches of CPC's mel mode.

Seed 004 §2.1.1 and §2.2.1: at 22050 Hz the 2D encoder sees log-mel spectrograms with
an FFT window of 2048 samples and 64 mel bands. The hop is chosen so that each of the
T+k = 30 windows of a 4 s crop becomes a square 64x64 patch; the seed computes the
spectrogram on the whole 4 s of audio (with librosa) and cuts it into patches.

Everything here is TensorFlow, so the same layers run in ``tf.data`` and inside a
model. The mel filterbank follows librosa's defaults (Slaney mel scale, Slaney area
normalisation), frames are centred like librosa's (``center=True``), the spectrum is
the power (magnitude squared) and the log is ``10 * log10(max(amin, S))`` with an
optional ``top_db`` floor per example, as ``librosa.power_to_db(S, ref=1.0)`` does.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

__all__ = [
    "LogMelSpectrogram",
    "MelPatches",
    "log_mel_spectrogram",
    "mel_filterbank",
    "mel_hop_length",
]

# Slaney's mel scale (librosa htk=False): linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def mel_hop_length(window_samples: int, frames: int) -> int:
    """Hop that turns one CPC window into ``frames`` spectrogram frames (Bajorath et al. 2021,
    §2.2.1).

    ``window_samples // frames``: 2940 // 64 = 45 for 4 s at 22050 Hz over 30 windows
    (about 490 frames per second; the seed quotes "480 time-steps per second").
    Rounding down guarantees the centred spectrogram of the whole crop has at least
    ``num_windows * frames`` frames.
    """
    hop = int(window_samples) // int(frames)
    if hop < 1:
        raise ValueError(f"a window of {window_samples} samples cannot give {frames} mel frames")
    return hop


def _hz_to_mel(f: tf.Tensor) -> tf.Tensor:
    log_part = _MIN_LOG_MEL + tf.math.log(tf.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return tf.where(f >= _MIN_LOG_HZ, log_part, f / _F_SP)


def _mel_to_hz(m: tf.Tensor) -> tf.Tensor:
    log_part = _MIN_LOG_HZ * tf.exp(_LOGSTEP * (tf.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return tf.where(m >= _MIN_LOG_MEL, log_part, _F_SP * m)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> tf.Tensor:
    """Triangular Slaney-normalised mel filters, ``[n_fft // 2 + 1, n_mels]`` float32.

    The same matrix as ``librosa.filters.mel(sr=..., n_fft=..., n_mels=..., fmin=..., fmax=...).T``
    with librosa's defaults (``htk=False``, ``norm="slaney"``); built in float64.
    ``fmax`` of ``None`` or 0 means Nyquist.
    """
    fmax = float(sample_rate) / 2.0 if not fmax else float(fmax)
    fft_freqs = tf.linspace(tf.constant(0.0, tf.float64), float(sample_rate) / 2.0, n_fft // 2 + 1)
    mels = tf.linspace(
        _hz_to_mel(tf.constant(float(fmin), tf.float64)),
        _hz_to_mel(tf.constant(fmax, tf.float64)),
        n_mels + 2,
    )
    edges = _mel_to_hz(mels)  # [n_mels + 2]
    widths = edges[1:] - edges[:-1]  # [n_mels + 1]
    ramps = edges[:, None] - fft_freqs[None, :]  # [n_mels + 2, K]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = tf.maximum(tf.minimum(rising, falling), tf.constant(0.0, tf.float64))  # [n_mels, K]
    weights = weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return tf.cast(tf.transpose(weights), tf.float32)


def log_mel_spectrogram(
    x: tf.Tensor,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
    amin: float = 1e-10,
    top_db: float | None = 80.0,
) -> tf.Tensor:
    """``[B, n] -> [B, frames, n_mels]`` log-mel power in dB (see the module docstring).

    With ``center`` the signal is padded by ``n_fft // 2`` on both sides (``"reflect"``
    needs more than ``n_fft // 2`` samples; ``"constant"`` pads zeros, librosa's own
    default since 0.10), giving ``1 + n // hop_length`` frames. ``top_db`` floors each
    example at its own maximum minus ``top_db``.
    """
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    if center:
        half = n_fft // 2
        mode = {"reflect": "REFLECT", "constant": "CONSTANT"}.get(pad_mode)
        if mode is None:
            raise ValueError(f"pad_mode must be 'reflect' or 'constant', got {pad_mode!r}")
        x = tf.pad(x, [[0, 0], [half, half]], mode=mode)
    spec = tf.signal.stft(
        x,
        frame_length=n_fft,
        frame_step=hop_length,
        fft_length=n_fft,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )
    power = tf.square(tf.math.real(spec)) + tf.square(tf.math.imag(spec))
    mel = tf.matmul(power, mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax))
    db = (10.0 / math.log(10.0)) * tf.math.log(tf.maximum(mel, float(amin)))
    if top_db is not None:
        db = tf.maximum(db, tf.reduce_max(db, axis=[-2, -1], keepdims=True) - float(top_db))
    return db


class _MelBase(keras.layers.Layer):
    """Shared settings of the two mel layers; computes in float32 whatever the dtype policy."""

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 2048,
        n_mels: int = 64,
        fmin: float = 0.0,
        fmax: float = 0.0,
        center: bool = True,
        pad_mode: str = "reflect",
        amin: float = 1e-10,
        top_db: float | None = 80.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if pad_mode not in ("reflect", "constant"):
            raise ValueError(f"pad_mode must be 'reflect' or 'constant', got {pad_mode!r}")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.n_mels = int(n_mels)
        self.fmin = float(fmin)
        self.fmax = float(fmax)
        self.center = bool(center)
        self.pad_mode = pad_mode
        self.amin = float(amin)
        self.top_db = None if top_db is None else float(top_db)

    def _log_mel(self, x: tf.Tensor, hop_length: int) -> tf.Tensor:
        return log_mel_spectrogram(
            x,
            self.sample_rate,
            self.n_fft,
            hop_length,
            self.n_mels,
            self.fmin,
            self.fmax or None,
            self.center,
            self.pad_mode,
            self.amin,
            self.top_db,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "n_fft": self.n_fft,
                "n_mels": self.n_mels,
                "fmin": self.fmin,
                "fmax": self.fmax,
                "center": self.center,
                "pad_mode": self.pad_mode,
                "amin": self.amin,
                "top_db": self.top_db,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="cpc_tf")
class LogMelSpectrogram(_MelBase):
    """``[B, n] -> [B, 1 + n // hop_length, n_mels]`` log-mel spectrogram (Bajorath et al. 2021,
    §2.1.1).

    Defaults follow the seed: 22050 Hz, ``n_fft`` 2048, 64 mel bands, ``fmax`` 0 meaning
    Nyquist.
    """

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 2048,
        hop_length: int = 512,
        n_mels: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, **kwargs)
        self.hop_length = int(hop_length)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self._log_mel(inputs, self.hop_length)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        n = input_shape[-1]
        frames = (
            None
            if n is None
            else (
                1 + n // self.hop_length if self.center else 1 + (n - self.n_fft) // self.hop_length
            )
        )
        return (input_shape[0], frames, self.n_mels)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["hop_length"] = self.hop_length
        return config


@keras.saving.register_keras_serializable(package="cpc_tf")
class MelPatches(_MelBase):
    """CPC mel mode (Bajorath et al. 2021, §2.2.1): ``[B, W, S] -> [B, W, frames, n_mels]`` square
    patches.

    The ``W`` windows of ``S`` samples are joined back into the crop they came from, one
    spectrogram is computed over the whole crop with hop ``S // frames`` (see
    :func:`mel_hop_length`), and its first ``W * frames`` frames are cut into ``W``
    patches of ``frames`` consecutive frames. The centred spectrogram has
    ``1 + W * S // hop`` frames, so the last few are dropped: for the default 4 s crop at
    22050 Hz (W = 30, S = 2940, hop 45) that is 1961 - 1920 = 41 frames, about the last
    0.08 s. Because the hop is rounded down, patch ``w`` starts at sample
    ``w * frames * hop`` (2880 w), slightly before window ``w`` (2940 w); the patches
    tile the crop's first ``W * frames * hop`` samples evenly. ``top_db`` applies per
    example over the whole crop, as librosa does on the 4 s of audio.
    """

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 2048,
        n_mels: int = 64,
        frames: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, **kwargs)
        self.frames = int(frames)

    def _shape(self, input_shape: Any) -> tuple[int, int]:
        if len(input_shape) != 3 or input_shape[-1] is None or input_shape[-2] is None:
            raise ValueError(
                "MelPatches needs input [batch, windows, window_samples] with static windows "
                f"and window_samples, got {tuple(input_shape)}"
            )
        return int(input_shape[-2]), int(input_shape[-1])

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        windows, samples = self._shape(inputs.shape)
        hop = mel_hop_length(samples, self.frames)
        if not self.center and 1 + (windows * samples - self.n_fft) // hop < windows * self.frames:
            raise ValueError(
                f"center=False leaves fewer than {windows * self.frames} frames; use center=True"
            )
        crop = tf.reshape(tf.cast(inputs, tf.float32), [-1, windows * samples])
        spec = self._log_mel(crop, hop)[:, : windows * self.frames, :]
        return tf.reshape(spec, [-1, windows, self.frames, self.n_mels])

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        windows, _ = self._shape(input_shape)
        return (input_shape[0], windows, self.frames, self.n_mels)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["frames"] = self.frames
        return config
