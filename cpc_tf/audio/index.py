"""The layout of a cache folder: the index (``index.json``), the names of the files
builds write, and the removal of what killed builds left behind.

The index lists every clip (relative path, duration, original rate, samples, size,
mtime, silent flag, shard, record count), every shard and every skipped file with its
reason. It is replaced atomically and written last, so it only ever names finished
shards. Shard files are ``shard-GGGGG-NNNNN.tfrecord``, ``GGGGG`` being the generation
(build) that wrote them; a shard is never modified once written. While a build runs
it also writes ``<shard>.tmp``, ``index.json.tmp`` and a spool folder ``.spool-<hex>``
(``cpc_tf_spool_<pid>_*`` in the temporary folder for a remote cache).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import tensorflow as tf

from cpc_tf.audio.files import FoundFile, SkippedFile
from cpc_tf.fileio import (
    fsync_dir,
    is_remote,
    join_path,
    list_names,
    pid_alive,
    remove_quietly,
    replace_file,
)

INDEX_NAME = "index.json"
INDEX_FORMAT = "cpc_tf.audio_cache"
INDEX_VERSION = 1
SHARD_RE = re.compile(r"^shard-\d{5}-\d{5}\.tfrecord$")
"""Names of shard files (any generation)."""
_SPOOL_RE = re.compile(r"^\.spool-[0-9a-f]{12}$")  # in a local cache folder
_TMP_SPOOL_RE = re.compile(r"^cpc_tf_spool_(\d+)_\w+$")  # in the temporary folder (remote caches)


@dataclass
class ClipInfo:
    """One cached audio file. ``clip_id`` is a stable identifier, not a list position:
    it survives incremental updates, and ids of removed files are not reused.
    """

    clip_id: int
    path: str  # relative to the audio folder, '/'-separated
    duration: float  # seconds at the cache's sample rate
    num_samples: int  # at the cache's sample rate
    orig_sample_rate: int
    silent: bool
    shard: str  # shard file name
    records: int = 1
    channels: int = 0
    size: int = 0
    mtime_ns: int = 0
    clipped: int = 0  # samples at int16 full scale


def shard_name(generation: int, serial: int) -> str:
    """The file name of shard ``serial`` written by build ``generation``."""
    return f"shard-{generation:05d}-{serial:05d}.tfrecord"


def clip_from_json(c: dict[str, Any]) -> ClipInfo:
    """A :class:`ClipInfo` from its index entry (fields added later have defaults)."""
    return ClipInfo(
        clip_id=int(c["clip_id"]),
        path=c["path"],
        duration=float(c["duration"]),
        num_samples=int(c["num_samples"]),
        orig_sample_rate=int(c["orig_sample_rate"]),
        silent=bool(c["silent"]),
        shard=c["shard"],
        records=int(c.get("records", 1)),
        channels=int(c.get("channels", 0)),
        size=int(c.get("size", 0)),
        mtime_ns=int(c.get("mtime_ns", 0)),
        clipped=int(c.get("clipped", 0)),
    )


def clip_to_json(c: ClipInfo) -> dict[str, Any]:
    """The index entry of a clip."""
    d = asdict(c)
    d["mtime"] = c.mtime_ns / 1e9
    return d


def skip_to_json(s: SkippedFile, f: FoundFile | None = None) -> dict[str, Any]:
    """The index entry of a skipped file; with its size and mtime when it was found."""
    d: dict[str, Any] = {"path": s.path, "reason": s.reason, "detail": s.detail}
    if f is not None:
        d.update(size=f.size, mtime_ns=f.mtime_ns)
    return d


# What earlier versions wrote as the detail of a file they skipped because of a fault of
# the machine (a full disk, no memory, an I/O error), recorded as if the file were bad.
_ENVIRONMENT_DETAIL = re.compile(
    r"No space left|Disk quota|Errno (28|122|12|5|24|23|30)\b|MemoryError"
    r"|out of memory|Cannot allocate"
    r"|Input/output error|Too many open files|Read-only file system",
    re.IGNORECASE,
)


def is_environment_skip(entry: dict[str, Any]) -> bool:
    """True for a skip entry whose detail names a fault of the machine, not of the file
    (such entries are retried instead of being carried over).
    """
    return bool(_ENVIRONMENT_DETAIL.search(str(entry.get("detail", ""))))


def skip_keys(skipped: Iterable[dict[str, Any]]) -> set[tuple[str, str, Any, Any]]:
    """What identifies a list of skip entries (to tell whether the index must change)."""
    return {(s["path"], s["reason"], s.get("size"), s.get("mtime_ns")) for s in skipped}


def new_index(
    audio_dir: str, sample_rate: int, record_seconds: float, old: dict[str, Any] | None
) -> dict[str, Any]:
    """An empty index that continues the generation and clip ids of ``old``."""
    return {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "audio_dir": audio_dir,
        "sample_rate": sample_rate,
        "record_seconds": record_seconds,
        "generation": int(old["generation"]) if old else 0,
        "next_clip_id": int(old.get("next_clip_id", 0)) if old else 0,
        "clips": [],
        "skipped": [],
        "shards": [],
    }


def read_index(root: str) -> dict[str, Any] | None:
    """The parsed index, or None when it is missing, unreadable or of another format."""
    path = join_path(root, INDEX_NAME)
    try:
        with tf.io.gfile.GFile(path, "r") as fh:
            index = json.loads(fh.read())
    except (tf.errors.OpError, OSError, ValueError, UnicodeDecodeError):
        return None
    if (
        not isinstance(index, dict)
        or index.get("format") != INDEX_FORMAT
        or index.get("version") != INDEX_VERSION
    ):
        return None
    try:
        for key in ("audio_dir", "sample_rate", "clips", "skipped", "shards", "generation"):
            index[key]  # noqa: B018 - presence check
        for c in index["clips"]:
            clip_from_json(c)
    except (KeyError, TypeError, ValueError):
        return None
    return index


def write_index(root: str, index: dict[str, Any]) -> None:
    """Replace the index atomically (and durably, on a local disk)."""
    path = join_path(root, INDEX_NAME)
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as fh:
        fh.write(json.dumps(index, indent=1))
    replace_file(tmp, path)
    fsync_dir(root)


def make_spool_dir(root: str) -> str:
    """A new folder for decoded audio on its way into shards (inside a local cache)."""
    if not is_remote(root):
        path = os.path.join(root, f".spool-{uuid.uuid4().hex[:12]}")
        os.makedirs(path)
        return path
    return tempfile.mkdtemp(prefix=f"cpc_tf_spool_{os.getpid()}_")


def remove_debris(root: str, referenced: set[str]) -> None:
    """Delete what killed builds left, by the names builds write: temporary shards and
    index, shards not in ``referenced`` (the index's), spool folders (here, and in the
    temporary folder for remote caches when their process is gone). Run under the
    cache's lock; anything else in the folder is left alone.
    """
    for name in list_names(root):
        path = join_path(root, name)
        tmp_of = name[:-4] if name.endswith(".tmp") else ""
        if (
            tmp_of == INDEX_NAME
            or SHARD_RE.match(tmp_of)
            or (SHARD_RE.match(name) and name not in referenced)
        ):
            remove_quietly(path)
        elif _SPOOL_RE.match(name) and not is_remote(path):
            shutil.rmtree(path, ignore_errors=True)
    if is_remote(root):
        remove_orphaned_spools(tempfile.gettempdir())


def remove_orphaned_spools(folder: str) -> None:
    """Delete ``cpc_tf_spool_<pid>_*`` folders of processes that no longer run."""
    for name in list_names(folder):
        m = _TMP_SPOOL_RE.match(name)
        if m is None or int(m.group(1)) == os.getpid():
            continue
        if not pid_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
