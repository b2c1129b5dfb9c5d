"""Augmentation throughput: cpc_tf's batched TensorFlow chain vs the same chain in audiomentations.

Both chains are CLMR's (Spijkervet & Burgoyne 2021, appendix B) at the probabilities of
``cpc_tf.config.AugmentConfig``: polarity 0.8, noise 80 dB 0.01, gain [-6, 0] dB 0.3,
low-/high-pass coin flip 0.8, delay 200-500 ms 0.3, pitch [-5, 5] semitones 0.6,
reverb 0.6. They run on the same clips: batches of 16 crops of 59,049 samples at
22050 Hz (SimCLR's input, Spijkervet & Burgoyne 2021, §3.3), cut from the recordings in
``../shared/data/recordings`` (synthetic tones when that folder is missing).

* ours: ``augment_batch`` as one ``tf.function`` per batch (the tf.data code path,
  ``skip_unfired=True``); also reported with ``skip_unfired=False`` (the XLA-safe path
  the in-model layer uses by default).
* audiomentations: ``Compose`` of PolarityInversion, AddGaussianSNR, Gain,
  OneOf(LowPassFilter, HighPassFilter) at 24 dB/octave (= Butterworth order 4), a
  numpy delay (audiomentations has none), PitchShift (its default method) and
  RoomSimulator (needs ``pyroomacoustics``; without it ApplyImpulseResponse on a
  synthetic decaying-noise response stands in, and the JSON line says so), one clip
  at a time, as a data loader would call it.

TensorFlow uses every core it is given (``--threads`` limits it); audiomentations runs
single-threaded, as in a one-worker loader. Prints human-readable lines, then exactly
one JSON line.

    python benchmarks/bench_augment.py [--batches 20] [--peer-batches 4] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 22050
CROP = 59049
BATCH = 16


def load_clips(folder: Path, count: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """`count` random crops of CROP samples (mono, SR), looping short files."""
    files = sorted(folder.glob("*.ogg")) + sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if not files:
        t = np.arange(CROP) / SR
        clips = [
            sum(0.2 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, 6))
            + 0.01 * rng.standard_normal(CROP)
            for f0 in rng.uniform(100, 800, count)
        ]
        return np.asarray(clips, np.float32), "synthetic"
    import librosa

    decoded = []
    for path in files:
        y, _ = librosa.load(path, sr=SR, mono=True)
        if y.size:
            decoded.append(y)
    clips = []
    for i in range(count):
        y = decoded[i % len(decoded)]
        if y.size < CROP:
            y = np.tile(y, CROP // y.size + 1)
        start = int(rng.integers(0, y.size - CROP + 1))
        clips.append(y[start : start + CROP])
    return np.asarray(clips, np.float32), f"{len(decoded)} files from {folder}"


def bench_ours(clips: np.ndarray, batches: int, skip_unfired: bool) -> float:
    import tensorflow as tf

    from cpc_tf.config import AugmentConfig
    from cpc_tf.dsp.augment import augment_batch

    cfg = AugmentConfig()
    fn = tf.function(lambda x, seed: augment_batch(x, cfg, SR, seed, skip_unfired=skip_unfired))
    data = [tf.constant(clips[i * BATCH : (i + 1) * BATCH]) for i in range(len(clips) // BATCH)]
    fn(data[0], tf.constant([0, 0], tf.int64)).numpy()  # trace and warm up
    times = []
    for i in range(batches):
        start = time.perf_counter()
        fn(data[i % len(data)], tf.constant([1, i], tf.int64)).numpy()
        times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def build_peer(tmp: Path) -> tuple[object, str]:
    from audiomentations import (
        AddGaussianSNR,
        Compose,
        Gain,
        HighPassFilter,
        LowPassFilter,
        OneOf,
        PitchShift,
        PolarityInversion,
    )
    from audiomentations.core.transforms_interface import BaseWaveformTransform

    class Delay(BaseWaveformTransform):
        """CLMR's delay in numpy: (x + 0.5 * x delayed by 200..500 ms in 50 ms steps) / 2."""

        supports_multichannel = False

        def randomize_parameters(self, samples: np.ndarray, sample_rate: int) -> None:
            super().randomize_parameters(samples, sample_rate)
            self.parameters["ms"] = random.choice(range(200, 550, 50))

        def apply(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
            offset = int(self.parameters["ms"] * sample_rate / 1000)
            delayed = np.concatenate(
                [np.zeros(offset, samples.dtype), samples[: samples.size - offset]]
            )
            return ((samples + 0.5 * delayed) / 2).astype(np.float32)

    try:
        import pyroomacoustics  # noqa: F401
        from audiomentations import RoomSimulator

        room, room_name = RoomSimulator(leave_length_unchanged=True, p=0.6), "RoomSimulator"
    except ImportError:
        import soundfile as sf
        from audiomentations import ApplyImpulseResponse

        rng = np.random.default_rng(0)
        t = np.arange(int(1.0 * SR)) / SR
        ir = (rng.standard_normal(t.size) * np.exp(-6.9 * t / 0.8)).astype(np.float32)
        sf.write(tmp / "ir.wav", ir / np.abs(ir).max(), SR)
        room = ApplyImpulseResponse(ir_path=str(tmp / "ir.wav"), p=0.6, leave_length_unchanged=True)
        room_name = "ApplyImpulseResponse(fallback: pyroomacoustics missing)"
    chain = Compose(
        [
            PolarityInversion(p=0.8),
            AddGaussianSNR(min_snr_db=80.0, max_snr_db=80.0, p=0.01),
            Gain(min_gain_db=-6.0, max_gain_db=0.0, p=0.3),
            OneOf(
                [
                    LowPassFilter(
                        min_cutoff_freq=2200.0,
                        max_cutoff_freq=4000.0,
                        min_rolloff=24,
                        max_rolloff=24,
                        p=1.0,
                    ),
                    HighPassFilter(
                        min_cutoff_freq=200.0,
                        max_cutoff_freq=1200.0,
                        min_rolloff=24,
                        max_rolloff=24,
                        p=1.0,
                    ),
                ],
                p=0.8,
            ),
            Delay(p=0.3),
            PitchShift(min_semitones=-5.0, max_semitones=5.0, p=0.6),
            room,
        ]
    )
    return chain, room_name


def bench_peer(clips: np.ndarray, batches: int) -> tuple[float, str]:
    random.seed(0)
    np.random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        chain, room_name = build_peer(Path(tmp))
        chain(clips[0], SR)  # warm up (imports, caches)
        times = []
        for b in range(batches):
            start = time.perf_counter()
            for clip in clips[(b % (len(clips) // BATCH)) * BATCH :][:BATCH]:
                chain(clip, SR)
            times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times), room_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="timed batches of 16 for ours")
    parser.add_argument(
        "--peer-batches", type=int, default=4, help="timed batches of 16 for audiomentations"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="TensorFlow intra-op threads (0 = default)"
    )
    parser.add_argument(
        "--audio-dir",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "recordings",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    clips, source = load_clips(args.audio_dir, 4 * BATCH, np.random.default_rng(0))
    print(f"clips: {len(clips)} x {CROP} samples at {SR} Hz ({source})")
    ours = bench_ours(clips, args.batches, skip_unfired=True)
    print(f"ours (tf.function, skip_unfired=True):  {ours:8.1f} examples/s")
    ours_all = bench_ours(clips, args.batches, skip_unfired=False)
    print(f"ours (tf.function, skip_unfired=False): {ours_all:8.1f} examples/s")
    peer, room_name = bench_peer(clips, args.peer_batches)
    print(f"audiomentations (reverb: {room_name}): {peer:8.1f} examples/s")
    print(
        json.dumps(
            {
                "bench": "augment",
                "aug_speedup_vs_audiomentations": round(ours / peer, 2),
                "ours_examples_per_s": round(ours, 1),
                "ours_all_examples_per_s": round(ours_all, 1),
                "audiomentations_examples_per_s": round(peer, 1),
                "peer_reverb": room_name,
                "batch": BATCH,
                "samples": CROP,
                "sample_rate": SR,
                "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
            }
        )
    )


if __name__ == "__main__":
    main()
