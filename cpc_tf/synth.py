"""Deterministic synthetic music for the demo and the tests.

Each class is a small "instrument" that differs from the others in the four ways the
brief asks for: timbre (harmonic spectrum), pitch range, rhythm and noise texture.
Clips are generated with numpy only, from a seed, so every run writes the same bytes.

- ``strings``: sawtooth-like spectrum (all harmonics, 1/n), low-mid pitches, slow legato notes.
- ``winds``: odd harmonics only (clarinet-like), mid pitches, medium notes with vibrato.
- ``bells``: inharmonic partials, high pitches, sharp attacks and long decays.
- ``drums``: no pitch; kick (falling sine) and hi-hat (bright noise) bursts on a fast grid.
- ``texture``: slowly swept band-passed noise, no onsets.
- ``rising`` / ``falling``: trains of harmonic pitch glides, up or down; one class is
  the other reversed in time, so only temporal structure separates them (a network that
  averages its frames without modelling their order cannot).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CLASSES = ("strings", "winds", "bells", "drums", "texture")


@dataclass(frozen=True)
class SynthSpec:
    """How many clips, how long, at which rate."""

    classes: tuple[str, ...] = CLASSES
    files_per_class: int = 12
    seconds: float = 5.0
    sample_rate: int = 22050
    seed: int = 0
    #: background noise: pink noise at a signal-to-noise ratio drawn per clip from this
    #: range (dB); None = clean clips
    snr_db: tuple[float, float] | None = None


def _envelope(n: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(n)
    a, r = min(attack, n), min(release, n)
    env[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    if r:
        env[n - r :] *= np.linspace(1.0, 0.0, r)
    return env


def _notes(
    rng: np.random.Generator,
    n: int,
    sr: int,
    note_s: tuple[float, float],
    midi: tuple[int, int],
    render,
) -> np.ndarray:
    out = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(*note_s) * sr)
        f0 = 440.0 * 2 ** ((rng.integers(midi[0], midi[1] + 1) - 69) / 12)
        seg = render(f0, min(length, n - pos), rng)
        out[pos : pos + len(seg)] += seg
        pos += length
    return out


def _harmonic(
    f0: float,
    n: int,
    sr: int,
    partials: list[tuple[float, float]],
    vibrato: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    t = np.arange(n) / sr
    phase_mod = vibrato * np.sin(2 * np.pi * 5.5 * t) if vibrato else 0.0
    sig = np.zeros(n)
    nyquist = sr / 2
    for ratio, amp in partials:
        f = f0 * ratio
        if f >= nyquist:
            continue
        sig += amp * np.sin(
            2 * np.pi * f * t
            + ratio * phase_mod
            + (rng.uniform(0, 2 * np.pi) if rng is not None else 0)
        )
    return sig


def _strings(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    def render(f0, m, r):
        partials = [(k, 1.0 / k) for k in range(1, 16)]
        return _harmonic(f0, m, sr, partials, vibrato=0.002, rng=r) * _envelope(
            m, int(0.15 * sr), int(0.2 * sr)
        )

    return _notes(rng, n, sr, (0.8, 1.6), (43, 60), render)


def _winds(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    def render(f0, m, r):
        partials = [(k, 1.0 / k) for k in range(1, 16, 2)]
        return _harmonic(f0, m, sr, partials, vibrato=0.01, rng=r) * _envelope(
            m, int(0.05 * sr), int(0.08 * sr)
        )

    return _notes(rng, n, sr, (0.3, 0.6), (58, 74), render)


def _bells(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    def render(f0, m, r):
        partials = [(1.0, 1.0), (2.76, 0.6), (5.40, 0.4), (8.93, 0.25), (13.34, 0.15)]
        t = np.arange(m) / sr
        return (
            _harmonic(f0, m, sr, partials, rng=r)
            * np.exp(-t / 0.35)
            * _envelope(m, int(0.002 * sr), 64)
        )

    return _notes(rng, n, sr, (0.25, 0.5), (76, 90), render)


def _drums(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    step = int(sr * rng.uniform(0.11, 0.14))  # a fast 16th-note grid
    pattern = rng.random(16) < 0.45
    pattern[0] = True
    for i, pos in enumerate(range(0, n, step)):
        if not pattern[i % 16]:
            continue
        m = min(int(0.12 * sr), n - pos)
        t = np.arange(m) / sr
        if i % 4 == 0:  # kick: a falling sine
            freq = 50 + 100 * np.exp(-t / 0.03)
            hit = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.08)
        else:  # hat: bright noise
            noise = rng.normal(size=m)
            hit = np.diff(noise, prepend=0.0) * np.exp(-t / 0.02) * 0.5
        out[pos : pos + m] += hit
    return out


def _texture(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    centre = rng.uniform(500, 3000)
    band = np.exp(-0.5 * ((freqs - centre) / (0.4 * centre)) ** 2)
    sig = np.fft.irfft(spec * band, n)
    t = np.arange(n) / sr
    return sig * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t))


def _harmonic_tone(freq: np.ndarray, sr: int) -> np.ndarray:
    """Five harmonics (amplitudes 0.6**k) following the instantaneous frequency `freq`."""
    phase = 2 * np.pi * np.cumsum(freq) / sr
    top = float(np.max(freq))
    tone = np.zeros_like(phase)
    for k in range(1, 6):
        if top * k < sr / 2:
            tone += (0.6**k) * np.sin(k * phase)
    return tone


def _glides(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A train of slow harmonic pitch glides, each rising, under a symmetric (Hann) envelope.

    ``falling`` is the same kind of signal reversed in time, so the two classes have the
    same distribution of short-time spectra and loudness: only the order of the frames
    tells them apart. The glides are slow (0.6-1.2 s for half an octave to an octave), so
    two neighbouring 10 ms frames look alike and the direction shows only over many.
    """
    out = np.zeros(n)
    pos = 0
    while pos < n:
        m = min(int(rng.uniform(0.6, 1.2) * sr), n - pos)
        f_start = 440.0 * 2 ** rng.uniform(-1.5, 0.5)
        octaves = rng.uniform(0.5, 1.0)
        t = np.arange(m) / sr
        freq = f_start * 2 ** (octaves * t / max(t[-1], 1e-9))
        out[pos : pos + m] += _harmonic_tone(freq, sr) * np.hanning(m)
        pos += m + int(rng.uniform(0.0, 0.05) * sr)
    return out


def _scales(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Runs of 6-10 notes climbing a major scale from a random tonic, each note under the
    same envelope; ``descending`` is its time reverse (the same notes, in the opposite order).
    """
    steps = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16])
    out = np.zeros(n)
    pos = 0
    while pos < n:
        tonic = 48 + int(rng.integers(0, 19))
        note = int(rng.uniform(0.08, 0.16) * sr)
        for step in steps[: int(rng.integers(6, 11))]:
            m = min(note, n - pos)
            if m <= 0:
                break
            freq = np.full(m, 440.0 * 2 ** ((tonic + step - 69) / 12))
            out[pos : pos + m] += _harmonic_tone(freq, sr) * np.hanning(m)
            pos += m
        pos += int(rng.uniform(0.05, 0.2) * sr)
    return out


def _rising(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    return _glides(rng, n, sr)


def _falling(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    return _glides(rng, n, sr)[::-1].copy()


def _ascending(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    return _scales(rng, n, sr)


def _descending(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    return _scales(rng, n, sr)[::-1].copy()


_RENDERERS = {
    "strings": _strings,
    "winds": _winds,
    "bells": _bells,
    "drums": _drums,
    "texture": _texture,
    "rising": _rising,
    "falling": _falling,
    "ascending": _ascending,
    "descending": _descending,
}
#: Classes that differ only in the order of their frames (time-reversed twins).
TEMPORAL_CLASSES = ("rising", "falling", "ascending", "descending")


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with a 1/f power spectrum (-3 dB per octave), unit RMS."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.arange(spec.size, dtype=float)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / (np.sqrt(np.mean(x**2)) or 1.0)


def synth_clip(
    kind: str,
    seconds: float,
    sample_rate: int,
    seed: int,
    snr_db: tuple[float, float] | None = None,
) -> np.ndarray:
    """One clip of class `kind`, peak-normalised to 0.8, float32.

    With `snr_db`, pink noise is added at a signal-to-noise ratio drawn from that range.
    """
    if kind not in _RENDERERS:
        raise ValueError(f"unknown synthetic class {kind!r}; choose from {', '.join(_RENDERERS)}")
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    sig = _RENDERERS[kind](rng, n, sample_rate)
    if snr_db is not None:
        rms = float(np.sqrt(np.mean(sig**2))) or 1.0
        sig = sig + pink_noise(rng, n) * rms * 10 ** (-rng.uniform(*snr_db) / 20)
    sig = sig + 1e-4 * rng.normal(size=n)  # a faint noise floor, as in real recordings
    peak = float(np.max(np.abs(sig))) or 1.0
    return (0.8 * sig / peak).astype(np.float32)


def _wav_writer(audio: np.ndarray, sample_rate: int) -> Callable[[str], None]:
    """A writer of `audio` as 16-bit WAV, for :func:`cpc_tf.fileio.atomic_write`."""

    def write(tmp: str) -> None:
        import soundfile as sf

        sf.write(tmp, audio, sample_rate, subtype="PCM_16")

    return write


def write_dataset(out_dir: str, spec: SynthSpec = SynthSpec()) -> list[str]:
    """Write ``out_dir/<class>/<class>_<i>.wav`` for every class; returns the paths."""
    from cpc_tf.fileio import atomic_write

    paths = []
    for c_idx, kind in enumerate(spec.classes):
        folder = os.path.join(out_dir, kind)
        os.makedirs(folder, exist_ok=True)
        for i in range(spec.files_per_class):
            path = os.path.join(folder, f"{kind}_{i:03d}.wav")
            if not os.path.exists(path):
                audio = synth_clip(
                    kind,
                    spec.seconds,
                    spec.sample_rate,
                    seed=spec.seed * 100_003 + c_idx * 1009 + i,
                    snr_db=spec.snr_db,
                )
                atomic_write(_wav_writer(audio, spec.sample_rate), path)
            paths.append(path)
    return paths
