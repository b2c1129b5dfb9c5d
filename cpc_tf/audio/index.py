"""The cache index (``index.json``): its schema, and reading and writing it atomically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import tensorflow as tf

from cpc_tf.audio._fs import _fsync_dir, _join, _replace

INDEX_NAME = "index.json"
INDEX_FORMAT = "cpc_tf.audio_cache"
INDEX_VERSION = 1


@dataclass
class ClipInfo:
    """One cached audio file. ``clip_id`` is a stable identifier, not a list position:
    it survives incremental updates, and ids of removed files are not reused."""

    clip_id: int
    path: str               # relative to the audio folder, '/'-separated
    duration: float         # seconds at the cache's sample rate
    num_samples: int        # at the cache's sample rate
    orig_sample_rate: int
    silent: bool
    shard: str              # shard file name
    records: int = 1
    channels: int = 0
    size: int = 0
    mtime_ns: int = 0



def _clip_from_json(c: dict[str, Any]) -> ClipInfo:
    return ClipInfo(clip_id=int(c["clip_id"]), path=c["path"], duration=float(c["duration"]),
                    num_samples=int(c["num_samples"]), orig_sample_rate=int(c["orig_sample_rate"]),
                    silent=bool(c["silent"]), shard=c["shard"], records=int(c.get("records", 1)),
                    channels=int(c.get("channels", 0)), size=int(c.get("size", 0)),
                    mtime_ns=int(c.get("mtime_ns", 0)))


def _clip_to_json(c: ClipInfo) -> dict[str, Any]:
    d = asdict(c)
    d["mtime"] = c.mtime_ns / 1e9
    return d


def _read_index(root: str) -> dict[str, Any] | None:
    """The parsed index, or None when it is missing, unreadable or of another format."""
    path = _join(root, INDEX_NAME)
    try:
        with tf.io.gfile.GFile(path, "r") as fh:
            index = json.loads(fh.read())
    except (tf.errors.OpError, OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT \
            or index.get("version") != INDEX_VERSION:
        return None
    try:
        for key in ("audio_dir", "sample_rate", "clips", "skipped", "shards", "generation"):
            index[key]  # noqa: B018 - presence check
        for c in index["clips"]:
            _clip_from_json(c)
    except (KeyError, TypeError, ValueError):
        return None
    return index


def _write_index(root: str, index: dict[str, Any]) -> None:
    path = _join(root, INDEX_NAME)
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as fh:
        fh.write(json.dumps(index, indent=1))
    _replace(tmp, path)
    _fsync_dir(root)
