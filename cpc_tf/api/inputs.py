"""Checking and converting the audio handed to :class:`cpc_tf.Embedder`.

Rules (each broken rule raises :class:`~cpc_tf.errors.InputError`, a ``ValueError``):

* **Layout.** A 1-D array is one sound; a 2-D array is ``[n_sounds, n_samples]``, one
  sound per row, all of the same length. A 2-D array whose second axis is 8 or fewer
  while its first is longer (``[samples, channels]``, e.g. stereo read with soundfile) is
  refused rather than embedded as thousands of 2-sample sounds: mix it down first
  (``audio.mean(axis=1)``). Anything else (0-D, 3-D, ragged lists) is refused.
* **Values.** Floats are taken as they are, full scale being ±1.0; a float array whose
  peak exceeds :data:`MAX_FLOAT_PEAK` is refused as "probably integer PCM stored as
  float". Integer PCM is scaled from its dtype: int8/int16/int32 by 2^7/2^15/2^31,
  uint8 (8-bit WAV) as ``(x - 128) / 128``. NaN or Inf samples, complex, boolean and
  object arrays are refused. An empty array (no sound, or sounds of 0 samples) is refused.
* **Rate.** ``sample_rate`` must be a positive whole number of Hz. Audio at another
  rate than the model's is resampled with soxr (high quality), to exactly
  ``ceil(n * model_rate / sample_rate)`` samples, as files are when decoded.

Tensors of TensorFlow or PyTorch (anything with ``.numpy()``) are accepted as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cpc_tf.errors import InputError

#: Largest absolute float sample accepted (full scale is 1.0; headroom for hot mixes).
MAX_FLOAT_PEAK = 4.0
#: A 2-D array with this many columns or fewer (and more rows) looks like ``[samples, channels]``.
MAX_CHANNELS = 8

_INT_SCALES = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


def to_numpy(audio: Any) -> np.ndarray:
    """A numpy view of `audio` (numpy array, list, TensorFlow or PyTorch tensor)."""
    if hasattr(audio, "detach"):  # torch.Tensor
        audio = audio.detach().cpu()
    if hasattr(audio, "numpy") and not isinstance(audio, np.ndarray):
        audio = audio.numpy()
    try:
        arr = np.asarray(audio)
    except ValueError as exc:  # ragged nested lists
        raise InputError(f"audio is not a rectangular array ({exc})") from None
    if arr.dtype == object:
        raise InputError(
            "audio is not a numeric array (ragged lists or objects); give a 1-D "
            "array of samples or a 2-D [n_sounds, n_samples] array"
        )
    return arr


def check_rate(sample_rate: Any) -> int:
    """`sample_rate` as a positive int; InputError otherwise."""
    try:
        rate = float(sample_rate)
    except (TypeError, ValueError):
        raise InputError(f"sample_rate must be a number of Hz, got {sample_rate!r}") from None
    if not np.isfinite(rate) or rate <= 0 or rate != int(rate):
        raise InputError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    return int(rate)


def _check_layout(arr: np.ndarray) -> np.ndarray:
    """``[n_sounds, n_samples]`` from a 1-D or 2-D array; InputError for anything else."""
    if arr.ndim == 1:
        arr = arr[None, :]
    elif arr.ndim != 2:
        raise InputError(
            f"audio must be 1-D (one sound) or 2-D [n_sounds, n_samples], got shape {arr.shape}"
        )
    n, samples = arr.shape
    if n == 0 or samples == 0:
        raise InputError(f"audio is empty (shape {arr.shape}): there is nothing to embed")
    if samples <= MAX_CHANNELS and n > samples:
        raise InputError(
            f"audio has shape {arr.shape}: 2-D input is [n_sounds, n_samples], and this "
            f"looks like [samples, channels]; mix it down first (audio.mean(axis=1)) "
            "or pass audio.T to embed each channel as a sound"
        )
    return arr


def _to_float(arr: np.ndarray) -> np.ndarray:
    """float32 samples with full scale 1.0, from float or integer PCM."""
    kind = arr.dtype.kind
    if kind == "f":
        return arr.astype(np.float32, copy=False)
    if arr.dtype in _INT_SCALES:
        return (arr.astype(np.float32) / np.float32(_INT_SCALES[arr.dtype])).astype(np.float32)
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    raise InputError(
        f"audio has dtype {arr.dtype}; expected float samples in [-1, 1] or integer PCM "
        "(int8, uint8, int16, int32)"
    )


def _check_values(x: np.ndarray) -> None:
    finite = np.isfinite(x)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise InputError(
            f"audio holds {int((~finite).sum())} NaN/Inf sample(s), the first in sound "
            f"{int(bad[0])} at sample {int(bad[1])}"
        )
    peak = float(np.max(np.abs(x)))
    if peak > MAX_FLOAT_PEAK:
        raise InputError(
            f"audio peaks at {peak:g}, but float samples have full scale 1.0: is it integer "
            "PCM stored as float? Pass the integer array itself, or divide by 32768 (16-bit)"
        )


def resample(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Rows of `x` resampled with soxr (HQ) to exactly ``ceil(n * out_rate / in_rate)`` samples."""
    if in_rate == out_rate:
        return x
    import soxr

    from cpc_tf.audio.files import resampled_length

    want = resampled_length(x.shape[1], in_rate, out_rate)
    out = np.zeros((x.shape[0], want), np.float32)
    for i in range(x.shape[0]):  # one row at a time: memory stays at one copy of the output
        y = soxr.resample(np.ascontiguousarray(x[i]), in_rate, out_rate, quality="HQ")
        out[i, : min(want, len(y))] = y[:want]
    return out


def prepare_sounds(audio: Any, sample_rate: Any, model_rate: int) -> tuple[np.ndarray, bool]:
    """Checked float32 ``[n_sounds, n_samples]`` at `model_rate`, and whether the input was 1-D.

    Raises:
        InputError: for any input that breaks the rules of this module's docstring.
    """
    rate = check_rate(sample_rate)
    arr = to_numpy(audio)
    single = arr.ndim == 1
    x = _to_float(_check_layout(arr))
    _check_values(x)
    return resample(x, rate, int(model_rate)), single
