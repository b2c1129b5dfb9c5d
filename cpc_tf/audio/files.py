"""Finding audio files in a folder and decoding them to mono at one sample rate.

This module is the public face of audio ingestion; the work is done in:

* :mod:`cpc_tf.audio.find`: :func:`find_audio_files` walks a folder (following links,
  each real folder once) and picks the files with an audio extension.
* :mod:`cpc_tf.audio.decode`: :class:`AudioReader` decodes one file with soundfile or
  audioread to mono float32 blocks, with header sanity checks; :func:`iter_resampled`
  and :func:`decode_audio` resample with soxr in bounded blocks.
* :mod:`cpc_tf.audio.sniff`: what a file that no decoder could open really is.
* :mod:`cpc_tf.audio.worker`: :func:`decode_for_cache`, the entry point the cache
  builder runs in its worker processes (int16 PCM out, long results spooled to disk).
* :mod:`cpc_tf.audio.skips`: the ``REASON_*`` constants, :class:`SkippedFile` and
  :class:`AudioFileError`.

None of these needs TensorFlow, so worker processes start fast and stay small.
"""

from __future__ import annotations

from cpc_tf.audio.decode import (
    BLOCK_FRAMES,
    MAX_OUT_BLOCK,
    MAX_SOURCE_RATE,
    MIN_SOURCE_RATE,
    RESAMPLE_QUALITIES,
    SILENCE_PEAK,
    AudioProbe,
    AudioReader,
    DecodedAudio,
    decode_audio,
    estimate_seconds,
    iter_resampled,
    probe_audio,
    resampled_length,
    to_int16,
)
from cpc_tf.audio.find import (
    AUDIO_EXTENSIONS,
    FoundFile,
    ScanResult,
    check_audio_folder,
    find_audio_files,
    is_audio_name,
)
from cpc_tf.audio.skips import (
    REASON_BAD_RATE,
    REASON_CORRUPT,
    REASON_EMPTY,
    REASON_NONFINITE,
    REASON_NOT_AUDIO,
    REASON_TOO_SHORT,
    REASON_UNREADABLE,
    REASON_UNSUPPORTED,
    AudioFileError,
    SkippedFile,
)
from cpc_tf.audio.worker import (
    CacheDecodeResult,
    decode_for_cache,
    read_spool,
    worker_init,
    worker_ready,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "BLOCK_FRAMES",
    "MAX_OUT_BLOCK",
    "MAX_SOURCE_RATE",
    "MIN_SOURCE_RATE",
    "REASON_BAD_RATE",
    "REASON_CORRUPT",
    "REASON_EMPTY",
    "REASON_NONFINITE",
    "REASON_NOT_AUDIO",
    "REASON_TOO_SHORT",
    "REASON_UNREADABLE",
    "REASON_UNSUPPORTED",
    "RESAMPLE_QUALITIES",
    "SILENCE_PEAK",
    "AudioFileError",
    "AudioProbe",
    "AudioReader",
    "CacheDecodeResult",
    "DecodedAudio",
    "FoundFile",
    "ScanResult",
    "SkippedFile",
    "check_audio_folder",
    "decode_audio",
    "decode_for_cache",
    "estimate_seconds",
    "find_audio_files",
    "is_audio_name",
    "iter_resampled",
    "probe_audio",
    "read_spool",
    "resampled_length",
    "to_int16",
    "worker_init",
    "worker_ready",
]
