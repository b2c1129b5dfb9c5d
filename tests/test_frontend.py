"""Ground-truth checks for the log-mel front end (cpc_tf.dsp.frontend) against librosa."""

from __future__ import annotations

import keras
import librosa
import numpy as np
import pytest
import tensorflow as tf

from cpc_tf.dsp.frontend import (
    LogMelSpectrogram,
    MelPatches,
    log_mel_spectrogram,
    mel_filterbank,
    mel_hop_length,
)

SR = 22050


def _chirp(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * (100 * t + (8000 - 100) / (2 * seconds) * t**2))).astype(
        np.float32
    )


def _noise(seconds: float = 2.0) -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32)


def _librosa_db(
    y: np.ndarray,
    hop: int,
    pad_mode: str,
    n_mels: int = 64,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    power = librosa.feature.melspectrogram(
        y=y,
        sr=SR,
        n_fft=2048,
        hop_length=hop,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        pad_mode=pad_mode,
    )
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=80.0).T


@pytest.mark.parametrize("n_mels,fmin,fmax", [(64, 0.0, None), (128, 30.0, 8000.0)])
def test_mel_filterbank_matches_librosa(n_mels: int, fmin: float, fmax: float | None) -> None:
    ours = mel_filterbank(SR, 2048, n_mels, fmin, fmax).numpy()
    ref = librosa.filters.mel(sr=SR, n_fft=2048, n_mels=n_mels, fmin=fmin, fmax=fmax).T
    np.testing.assert_allclose(ours, ref, atol=1e-7 * ref.max() + 1e-9)


@pytest.mark.parametrize("signal", ["chirp", "noise"])
@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_log_mel_matches_librosa_power_to_db(signal: str, pad_mode: str) -> None:
    y = _chirp() if signal == "chirp" else _noise()
    ref = _librosa_db(y, 512, pad_mode)
    ours = LogMelSpectrogram(SR, 2048, 512, 64, pad_mode=pad_mode)(y[None]).numpy()[0]
    assert ours.shape == ref.shape == (1 + y.size // 512, 64)
    # Tolerance: 0.1 dB on every bin within 60 dB of the maximum, 0.5 dB on all bins.
    loud = ref > ref.max() - 60.0
    assert np.max(np.abs(ours - ref)[loud]) < 0.1
    assert np.max(np.abs(ours - ref)) < 0.5


def test_mel_patches_shape_and_content_for_the_default_cpc_crop() -> None:
    windows, samples, frames = 30, 4 * SR // 30, 64  # 4 s at 22050 Hz, T+k = 30 -> 2940 samples
    hop = mel_hop_length(samples, frames)
    assert (samples, hop) == (2940, 45)
    x = _noise(4.0)[None, : windows * samples].repeat(2, axis=0) * np.array(
        [[1.0], [0.5]], np.float32
    )
    patches = MelPatches(SR, 2048, 64, frames)(x.reshape(2, windows, samples)).numpy()
    assert patches.shape == (2, 30, 64, 64)
    # The patches are the first 30 * 64 frames of one spectrogram over the whole crop.
    full = _librosa_db(x[1], hop, "reflect")
    assert full.shape[0] == 1 + windows * samples // hop == 1961
    loud = full[: windows * frames] > full.max() - 60.0
    diff = np.abs(patches[1].reshape(windows * frames, 64) - full[: windows * frames])
    assert np.max(diff[loud]) < 0.1


def test_mel_hop_length_rejects_too_many_frames() -> None:
    assert mel_hop_length(588, 64) == 9
    with pytest.raises(ValueError):
        mel_hop_length(32, 64)


def test_layers_in_tf_data_in_a_model_and_saving_round_trip(tmp_path) -> None:  # noqa: ANN001
    x = _noise(1.0)[None, : 22050 // 30 * 30].repeat(4, axis=0)
    ds = (
        tf.data.Dataset.from_tensor_slices(x)
        .batch(2)
        .map(lambda b: log_mel_spectrogram(b, SR, 1024, 256, 32))
    )
    assert next(iter(ds)).shape == (2, 1 + x.shape[1] // 256, 32)
    layer = LogMelSpectrogram(SR, n_fft=1024, hop_length=256, n_mels=32)
    assert next(iter(tf.data.Dataset.from_tensor_slices(x).batch(2).map(layer))).shape == (
        2,
        87,
        32,
    )

    inputs = keras.Input((30, x.shape[1] // 30))
    outputs = MelPatches(SR, n_fft=512, n_mels=16, frames=16)(inputs)
    model = keras.Model(inputs, outputs)
    windows = x.reshape(4, 30, -1)
    expected = model(windows).numpy()
    assert expected.shape == (4, 30, 16, 16)
    path = tmp_path / "mel.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(windows).numpy(), expected, atol=1e-5)
    restored = LogMelSpectrogram.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()
