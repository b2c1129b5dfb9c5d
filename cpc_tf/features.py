"""Hand-crafted reference features: MFCC or log-mel statistics per file.

A learned representation is only worth its training if it beats what twenty lines of
signal processing give. This module computes the classic reference -- the mean and
standard deviation over time of 20 MFCCs -- for every file of a folder, with
librosa's defaults (``librosa.feature.mfcc``: 22,050 Hz, n_fft 2048, hop 512, 128
Slaney mel bands, ``power_to_db`` with an 80 dB floor, DCT-II with orthonormal
scaling), computed in TensorFlow from the decoded cache. ``logmel`` gives the same
statistics of the 128 log-mel bands instead.

The result is written like any embeddings file, one row per file, so ``evaluate``
treats it as one more representation (``run`` is ``features:mfcc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from cpc_tf.dsp.frontend import log_mel_spectrogram

FEATURES = ("mfcc", "logmel")


@dataclass(frozen=True)
class FeatureSpec:
    """Settings of the reference features (librosa's defaults)."""

    kind: str = "mfcc"
    sample_rate: int = 22050
    n_fft: int = 2048
    hop: int = 512
    n_mels: int = 128
    n_mfcc: int = 20
    top_db: float = 80.0

    def describe(self) -> str:
        what = f"{self.n_mfcc} MFCCs" if self.kind == "mfcc" else f"{self.n_mels} log-mel bands"
        return (
            f"mean and std over time of {what} (librosa defaults: {self.sample_rate} Hz, n_fft "
            f"{self.n_fft}, hop {self.hop}, {self.n_mels} mel bands)"
        )


def frame_features(audio: Any, spec: FeatureSpec) -> tf.Tensor:
    """``[n]`` samples → ``[frames, d]`` MFCCs (or log-mel dB) of one signal.

    Matches ``librosa.feature.mfcc(y=audio, sr=spec.sample_rate, n_mfcc=20)``: the
    80 dB floor is relative to the loudest bin of the whole signal, as in
    ``librosa.power_to_db(S, ref=1.0, top_db=80)``.
    """
    x = tf.reshape(tf.cast(audio, tf.float32), [1, -1])
    db = log_mel_spectrogram(
        x,
        spec.sample_rate,
        spec.n_fft,
        spec.hop,
        spec.n_mels,
        center=True,
        pad_mode="constant",
        top_db=spec.top_db,
    )[0]  # [frames, n_mels]
    if spec.kind == "logmel":
        return db
    return tf.signal.dct(db, type=2, norm="ortho")[:, : spec.n_mfcc]


@tf.function(reduce_retracing=True)
def _moments(audio: tf.Tensor, spec: FeatureSpec) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Frame count, sum and sum of squares of the frame features (``spec`` is hashable)."""
    f = tf.cast(frame_features(audio, spec), tf.float64)
    return tf.cast(tf.shape(f)[0], tf.float64), tf.reduce_sum(f, 0), tf.reduce_sum(tf.square(f), 0)


def file_statistics(cache: Any, spec: FeatureSpec, progress: bool = True) -> dict[int, np.ndarray]:
    """Clip id → ``[mean, std]`` of the frame features over the whole file.

    The cache must be at ``spec.sample_rate``. A file stored as several records (longer
    than 10 minutes) is accumulated over its records, each with its own 80 dB floor.
    """
    from cpc_tf.audio.cache import parse_record
    from cpc_tf.audio.report import progress_bar

    if cache.sample_rate != spec.sample_rate:
        raise ValueError(
            f"the cache is at {cache.sample_rate} Hz, the features need {spec.sample_rate} Hz"
        )
    sums: dict[int, list[Any]] = {}
    ds = tf.data.TFRecordDataset(cache.shard_paths).map(
        parse_record, num_parallel_calls=tf.data.AUTOTUNE
    )
    records = sum(c.records for c in cache.clips)
    with progress_bar(records, f"extract: {spec.kind} features", progress, unit="record") as bar:
        for record in ds:
            audio = record["audio"]
            if int(tf.size(audio)) < 2:  # nothing to frame: one frame of silence
                audio = tf.zeros([2])
            n, s1, s2 = _moments(audio, spec)
            acc = sums.setdefault(int(record["clip_id"]), [0.0, 0.0, 0.0])
            acc[0] += float(n)
            acc[1] = acc[1] + s1.numpy()
            acc[2] = acc[2] + s2.numpy()
            bar.update(1)
    out = {}
    for clip_id, (n, s1, s2) in sums.items():
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
        out[clip_id] = np.concatenate([mean, std]).astype(np.float32)
    return out
