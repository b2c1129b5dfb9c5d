"""The cache's record format: one serialized ``tf.train.Example`` per piece of a clip.

Each record holds ``audio`` (int16 little-endian bytes), ``clip_id``, ``offset`` (first
sample of the piece within its clip) and ``path``. :func:`serialize_record` writes the
protobuf bytes by hand (one copy of the payload); :func:`parse_record` reads them in
the graph.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

RECORD_SECONDS = 600.0
"""Longest piece of a clip stored in one record (10 minutes)."""

_RECORD_FEATURES = {
    "audio": tf.io.FixedLenFeature([], tf.string),
    "clip_id": tf.io.FixedLenFeature([], tf.int64),
    "offset": tf.io.FixedLenFeature([], tf.int64),
    "path": tf.io.FixedLenFeature([], tf.string),
}


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negatives
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(tag: int, payload_len: int) -> bytes:
    """The key and length of a length-delimited protobuf field (the payload follows)."""
    return bytes([tag << 3 | 2]) + _varint(payload_len)


def _feature_entry(key: str, kind: int, payload: bytes | memoryview) -> list[bytes | memoryview]:
    """One ``Features.feature`` map entry, as a list of byte pieces to join.

    ``kind`` is the ``Feature`` oneof field: 1 for a BytesList, 3 for an Int64List;
    ``payload`` is the list's single (bytes) or packed (varints) ``value`` field.
    """
    inner = _len_field(1, len(payload))  # BytesList/Int64List.value
    feature = _len_field(kind, len(inner) + len(payload))  # Feature.{bytes,int64}_list
    key_bytes = key.encode()
    key_field = _len_field(1, len(key_bytes)) + key_bytes  # map entry key
    value_field = _len_field(2, len(feature) + len(inner) + len(payload))
    entry_len = len(key_field) + len(value_field) + len(feature) + len(inner) + len(payload)
    return [_len_field(1, entry_len), key_field, value_field, feature, inner, payload]


def serialize_record(pcm: np.ndarray, clip_id: int, offset: int, path: str) -> bytes:
    """One cache record (a serialized ``tf.train.Example``): int16 PCM plus its origin.

    The protobuf bytes are assembled by hand: building ``tf.train.Example`` objects
    copies a multi-megabyte payload several times, this copies it once.
    """
    audio = memoryview(np.ascontiguousarray(pcm, dtype="<i2")).cast("B")  # type: ignore[arg-type]
    pieces: list[bytes | memoryview] = (
        _feature_entry("audio", 1, audio)
        + _feature_entry("clip_id", 3, _varint(int(clip_id)))
        + _feature_entry("offset", 3, _varint(int(offset)))
        + _feature_entry("path", 1, os.fsencode(path))
    )
    features_len = sum(len(p) for p in pieces)
    return b"".join([_len_field(1, features_len), *pieces])


def parse_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parse one serialized record (graph-safe, for ``TFRecordDataset.map``).

    Returns ``audio`` (float32 [n] in [-1, 1)), ``clip_id`` and ``offset`` (int64) and
    ``path`` (string).
    """
    parsed = tf.io.parse_single_example(serialized, _RECORD_FEATURES)
    pcm = tf.io.decode_raw(parsed["audio"], tf.int16, little_endian=True)
    return {
        "audio": tf.cast(pcm, tf.float32) / 32768.0,
        "clip_id": parsed["clip_id"],
        "offset": parsed["offset"],
        "path": parsed["path"],
    }


def record_clip_id(record: bytes) -> int:
    """The ``clip_id`` of a serialized record (read in Python, outside the graph)."""
    example = tf.train.Example.FromString(record)
    return int(example.features.feature["clip_id"].int64_list.value[0])
