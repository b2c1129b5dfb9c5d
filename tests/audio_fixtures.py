"""Synthetic audio files for the ingestion tests: good files of every kind, and bad ones.

Everything is generated on the fly into a test's tmp_path; no third-party audio.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from cpc_tf.audio import files as audio_files


def _in_folder(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def sine(
    seconds: float, sr: int, freq: float = 440.0, channels: int = 1, amp: float = 0.5
) -> np.ndarray:
    """A sine of ``seconds`` at ``sr``; several channels get slightly different phases."""
    t = np.arange(int(round(seconds * sr))) / sr
    cols = [amp * np.sin(2 * np.pi * freq * t + 0.1 * c) for c in range(channels)]
    x = np.stack(cols, axis=1) if channels > 1 else cols[0]
    return x.astype(np.float32)


def write_sine(
    path: Path,
    seconds: float = 0.5,
    sr: int = 16000,
    freq: float = 440.0,
    channels: int = 1,
    subtype: str | None = None,
    fmt: str | None = None,
    amp: float = 0.5,
) -> Path:
    """Write a sine file (format from the suffix unless ``fmt`` is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), sine(seconds, sr, freq, channels, amp), sr, subtype=subtype, format=fmt)
    return path


def write_silent(path: Path, seconds: float = 0.5, sr: int = 16000) -> Path:
    """An all-zero WAV."""
    _in_folder(path)
    sf.write(str(path), np.zeros(int(seconds * sr), np.float32), sr, subtype="PCM_16")
    return path


def write_corrupt_wav(path: Path) -> Path:
    """A RIFF/WAVE header whose fmt chunk is cut off: recognisably WAV, undecodable."""
    _in_folder(path)
    header = b"RIFF" + struct.pack("<I", 1000) + b"WAVEfmt " + struct.pack("<I", 16)
    path.write_bytes(header + b"\x01\x00\x01")
    return path


def write_corrupt_flac(path: Path) -> Path:
    """A FLAC file whose middle is overwritten with noise (fails while decoding)."""
    _in_folder(path)
    write_sine(path.with_suffix(".tmp.flac"), seconds=1.0)
    data = bytearray(path.with_suffix(".tmp.flac").read_bytes())
    path.with_suffix(".tmp.flac").unlink()
    mid = len(data) // 2
    data[mid : mid + 600] = np.random.default_rng(1).bytes(600)
    path.write_bytes(bytes(data))
    return path


def write_unsupported_wav(path: Path, tag: int = 0x1234) -> Path:
    """A well-formed WAV header with a format tag nobody decodes."""
    _in_folder(path)
    write_sine(path, seconds=0.2)
    data = bytearray(path.read_bytes())
    data[20:22] = struct.pack("<H", tag)
    path.write_bytes(bytes(data))
    return path


def write_random_bytes(path: Path, n: int = 5000, seed: int = 0) -> Path:
    """Random bytes (e.g. an '.mp3' that is nothing of the kind)."""
    _in_folder(path)
    data = bytearray(np.random.default_rng(seed).bytes(n))
    data[0] = 0x00  # make sure it does not start like an MPEG frame or a known container
    path.write_bytes(bytes(data))
    return path


def write_text(path: Path) -> Path:
    """A text file with an audio name."""
    _in_folder(path)
    path.write_text("this is not audio, just some words in a file\n" * 20)
    return path


def write_nonfinite_wav(path: Path, value: float = float("nan"), sr: int = 16000) -> Path:
    """A float WAV with one non-finite sample in the middle."""
    _in_folder(path)
    x = sine(0.5, sr)
    x[len(x) // 2] = value
    sf.write(str(path), x, sr, subtype="FLOAT")
    return path


def write_zero_frames(path: Path, sr: int = 16000) -> Path:
    """A valid WAV header with no samples."""
    _in_folder(path)
    sf.write(str(path), np.zeros(0, np.float32), sr, subtype="PCM_16")
    return path


def dominant_frequency(x: np.ndarray, sr: int) -> float:
    """Frequency (Hz) of the largest FFT bin of a Hann-windowed signal."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def crashing_decode(items: list[tuple[str, str]], **kwargs: object) -> list[object]:
    """A decode task that kills its worker process on any file named 'crash*'."""
    for path, _rel in items:
        if os.path.basename(path).startswith("crash"):
            os._exit(3)
    return audio_files.decode_for_cache(items, **kwargs)  # type: ignore[arg-type]


def slow_decode(items: list[tuple[str, str]], **kwargs: object) -> list[object]:
    """A decode task that takes 0.3 s per file (so that a build can be caught mid-way)."""
    import time

    time.sleep(0.3 * len(items))
    return audio_files.decode_for_cache(items, **kwargs)  # type: ignore[arg-type]


def write_wav_claiming_rate(path: Path, rate: int, frames: int = 100) -> Path:
    """A 16-bit mono WAV of ``frames`` samples whose header claims ``rate`` Hz (any uint32)."""
    _in_folder(path)
    data = (np.arange(frames, dtype="<i2") * 100).tobytes()
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, (rate * 2) & 0xFFFFFFFF, 2, 16)
        + b"data"
        + struct.pack("<I", len(data))
    )
    path.write_bytes(header + data)
    return path
