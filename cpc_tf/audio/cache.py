"""The decode-once cache: TFRecord shards of int16 PCM at one sample rate, plus an index.

A cache belongs to one (absolute audio folder, sample rate) pair and lives in
``<base>/<folder name>-<hash>/sr<rate>/`` where ``<base>`` is ``cache_dir``, else
``$CPC_TF_CACHE``, else ``~/.cache/cpc_tf``. It holds:

* ``shard-GGGGG-NNNNN.tfrecord``: serialized ``tf.train.Example`` records, one per
  piece of a clip (a clip longer than :data:`RECORD_SECONDS` is cut into several
  records), each with ``audio`` (int16 little-endian bytes), ``clip_id``, ``offset``
  (first sample of the piece within its clip) and ``path``. ``GGGGG`` is the
  generation that wrote the shard; a shard file is never modified once written.
* ``index.json``: every clip (relative path, duration, original rate, samples, size,
  mtime, silent flag, shard, record count), every shard and every skipped file with
  its reason. It is replaced atomically and written last.

:func:`open_cache` scans the folder, reuses everything whose size and mtime did not
change, decodes new or changed files in parallel processes and writes them into new
shards, copies shards that lost clips into new shards (no decoding), writes the index,
and only then deletes superseded shards. A build that dies at any point therefore
leaves the previous index pointing at untouched shards; the debris (``*.tmp``,
unreferenced shards, spool folders) is removed by the next build.

The parts: :mod:`~cpc_tf.audio.records` (the record format), :mod:`~cpc_tf.audio.index`
(the index and file names), :mod:`~cpc_tf.audio.shards` (writing and planning shards),
:mod:`~cpc_tf.audio.pool` (the crash-tolerant decoder processes),
:mod:`~cpc_tf.audio.builder` (one build, step by step) and :mod:`~cpc_tf.audio.report`
(the text shown to people). This module is the public face: :class:`AudioCache`,
:func:`open_cache`, :func:`open_cache_for` and :func:`cache_root`.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from cpc_tf.audio import files as audio_files
from cpc_tf.audio.builder import Builder, BuildSettings, CacheUpdate
from cpc_tf.audio.files import SkippedFile
from cpc_tf.audio.index import INDEX_NAME, ClipInfo, clip_from_json, read_index
from cpc_tf.audio.pool import check_not_bootstrapping
from cpc_tf.audio.records import RECORD_SECONDS, parse_record, serialize_record
from cpc_tf.audio.report import format_duration, printable
from cpc_tf.checks import check_number
from cpc_tf.errors import DataError, ResourceError
from cpc_tf.fileio import folder_lock, is_remote, join_path

if TYPE_CHECKING:
    from cpc_tf.config import Config

__all__ = [
    "INDEX_NAME",
    "RECORD_SECONDS",
    "AudioCache",
    "CacheUpdate",
    "ClipInfo",
    "SkippedFile",
    "cache_root",
    "open_cache",
    "open_cache_for",
    "parse_record",
    "serialize_record",
]


NEAR_EMPTY_SECONDS = 0.01
"""Clips shorter than this (10 ms) are counted as near-empty in :meth:`AudioCache.warnings`."""


class AudioCache:
    """A built cache: where it is, which clips it holds, what was skipped.

    Attributes: ``root`` (cache folder), ``audio_dir`` (absolute source folder),
    ``sample_rate``, ``clips`` (sorted by path), ``skipped``, ``shard_paths``
    (absolute, sorted) and ``update`` (what the last build did, when known).
    """

    def __init__(
        self,
        root: str,
        audio_dir: str,
        sample_rate: int,
        clips: Sequence[ClipInfo],
        skipped: Sequence[SkippedFile],
        shards: Sequence[dict[str, Any]],
        update: CacheUpdate | None = None,
    ) -> None:
        self.root = root
        self.audio_dir = audio_dir
        self.sample_rate = int(sample_rate)
        self.clips: list[ClipInfo] = sorted(clips, key=lambda c: c.path)
        self.skipped: list[SkippedFile] = sorted(skipped, key=lambda s: s.path)
        self.shards: list[dict[str, Any]] = sorted(
            (dict(s) for s in shards), key=lambda s: s["name"]
        )
        self.shard_paths: list[str] = [join_path(root, s["name"]) for s in self.shards]
        self.update = update or CacheUpdate()
        self._by_id = {c.clip_id: c for c in self.clips}

    @classmethod
    def load(cls, root: str) -> AudioCache:
        """Read an existing cache folder without scanning or updating anything."""
        index = read_index(root)
        if index is None:
            raise DataError(f"no valid audio cache in {root}")
        return cls._from_index(root, index)

    @classmethod
    def _from_index(
        cls, root: str, index: dict[str, Any], update: CacheUpdate | None = None
    ) -> AudioCache:
        clips = [clip_from_json(c) for c in index["clips"]]
        skipped = [
            SkippedFile(s["path"], s["reason"], s.get("detail", "")) for s in index["skipped"]
        ]
        return cls(
            root, index["audio_dir"], index["sample_rate"], clips, skipped, index["shards"], update
        )

    # -- queries
    @property
    def total_seconds(self) -> float:
        """Seconds of audio in the cache."""
        return sum(c.duration for c in self.clips)

    @property
    def num_silent(self) -> int:
        """Clips flagged silent (kept, but probably useless for training)."""
        return sum(c.silent for c in self.clips)

    def clip(self, clip_id: int) -> ClipInfo:
        """The clip with this id; KeyError if there is none."""
        try:
            return self._by_id[int(clip_id)]
        except KeyError:
            raise KeyError(f"no clip with id {clip_id} in the cache at {self.root}") from None

    def shard_paths_for(self, clip_ids: Iterable[int]) -> list[str]:
        """Absolute paths (sorted) of the shards holding these clips."""
        names = {self.clip(int(i)).shard for i in clip_ids}
        return sorted(join_path(self.root, n) for n in names)

    def skipped_by_reason(self) -> dict[str, list[str]]:
        """Skipped paths grouped by reason, reasons ordered by count (largest first)."""
        groups: dict[str, list[str]] = {}
        for s in self.skipped:
            groups.setdefault(s.reason, []).append(s.path)
        return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def summary(self) -> str:
        """One line, e.g. ``3000 files, 0.84 h of audio, 8 shards; skipped 3 (corrupt: 1,
        not audio: 2); 1 silent file flagged``.
        """
        n, k = len(self.clips), len(self.shards)
        text = (
            f"{n} file{'s' * (n != 1)}, {format_duration(self.total_seconds)} of audio, "
            f"{k} shard{'s' * (k != 1)}"
        )
        if self.skipped:
            counts = ", ".join(f"{r}: {len(p)}" for r, p in self.skipped_by_reason().items())
            text += f"; skipped {len(self.skipped)} ({counts})"
        if self.num_silent:
            s = self.num_silent
            text += f"; {s} silent file{'s' * (s != 1)} flagged"
        return text

    def warnings(self) -> dict[str, list[str]]:
        """Clips kept but worth a look, by kind: samples clipped at full scale, a single
        source sample, near-empty (shorter than :data:`NEAR_EMPTY_SECONDS`).
        """
        clipped, single, short = (
            "clipped at full scale",
            "a single sample",
            f"near-empty (< {NEAR_EMPTY_SECONDS * 1000:g} ms)",
        )
        groups: dict[str, list[str]] = {clipped: [], single: [], short: []}
        for c in self.clips:
            if c.clipped:
                groups[clipped].append(c.path)
            if round(c.num_samples * c.orig_sample_rate / self.sample_rate) <= 1:  # source frames
                groups[single].append(c.path)
            elif c.duration < NEAR_EMPTY_SECONDS:
                groups[short].append(c.path)
        return {kind: paths for kind, paths in groups.items() if paths}

    def __repr__(self) -> str:
        return f"AudioCache({self.root!r}: {self.summary()})"


def cache_root(
    audio_dir: str | os.PathLike[str],
    sample_rate: int,
    cache_dir: str | os.PathLike[str] | None = None,
) -> str:
    """Where the cache of (``audio_dir``, ``sample_rate``) lives."""
    folder = os.path.realpath(os.fspath(audio_dir))
    base = (
        os.fspath(cache_dir)
        if cache_dir
        else (os.environ.get("CPC_TF_CACHE") or os.path.join("~", ".cache", "cpc_tf"))
    )
    if not is_remote(base):
        base = os.path.abspath(os.path.expanduser(base))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(folder.rstrip(os.sep)) or "root")[:48]
    digest = hashlib.sha1(folder.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return join_path(join_path(base, f"{name}-{digest}"), f"sr{int(sample_rate)}")


# ------------------------------------------------------------------- entry point
def open_cache(
    audio_dir: str | os.PathLike[str],
    sample_rate: int,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = 0,
    progress: bool = True,
    min_shards: int = 8,
    shard_seconds: float = 1800.0,
) -> AudioCache:
    """Build the cache of ``audio_dir`` at ``sample_rate``, or bring it up to date, and open it.

    Unchanged files (same size and mtime) are never decoded again; new and changed ones
    are decoded into new shards by ``workers`` processes (0 = one per available core):
    this one, which also writes the shards, plus ``workers - 1`` spawned workers. Raises
    :class:`DataError` for a missing, empty or audio-less folder and for a folder where
    no file decodes; a single bad file is only listed in ``skipped``.
    """
    check_not_bootstrapping()
    started = time.perf_counter()
    sample_rate = check_number("sample_rate", sample_rate, integer=True, minimum=1)
    workers = check_number("workers", workers, integer=True, minimum=0)
    min_shards = check_number("min_shards", min_shards, integer=True, minimum=1)
    shard_seconds = check_number("shard_seconds", shard_seconds, minimum=1e-3)
    folder = audio_files.check_audio_folder(audio_dir)
    scan = audio_files.find_audio_files(folder)
    if not scan.files:
        if scan.skipped:
            counts = Counter(s.reason for s in scan.skipped)
            what = ", ".join(f"{r}: {n}" for r, n in counts.most_common())
            raise DataError(
                f"none of the {len(scan.skipped)} audio entries in {folder} could be read ({what})"
            )
        exts = " ".join(sorted(audio_files.AUDIO_EXTENSIONS))
        others = (
            f"; it holds {scan.other_files} other files"
            if scan.other_files
            else "; it holds only empty sub-folders"
        )
        raise DataError(f"no audio files ({exts}) in {folder}{others}")
    root = cache_root(folder, sample_rate, cache_dir)
    try:
        tf.io.gfile.makedirs(root)
    except (tf.errors.OpError, OSError) as exc:
        raise DataError(f"cannot create the cache folder {root}: {exc}") from None
    settings = BuildSettings(
        workers, progress, min_shards, shard_seconds, record_seconds=RECORD_SECONDS
    )
    builder = Builder(root, folder, sample_rate, scan, settings)
    try:
        with folder_lock(root):
            index = builder.run()
    except ResourceError as exc:  # raised by a decoder
        raise _machine_fault(root, str(exc)) from None
    except MemoryError:
        raise _machine_fault(root, "out of memory") from None
    except OSError as exc:
        raise _machine_fault(root, exc.strerror or str(exc)) from None
    except tf.errors.OpError as exc:
        raise _machine_fault(root, exc.message) from None
    builder.update.seconds = round(time.perf_counter() - started, 3)
    return AudioCache._from_index(root, index, builder.update)


def _machine_fault(root: str, what: str) -> ResourceError:
    return ResourceError(
        f"cannot build the cache in {printable(root)}: {printable(what)}; nothing was "
        "recorded and the previous cache is unchanged, run again once this is fixed"
    )


def open_cache_for(
    cfg: Config,
    audio_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    workers: int | None = None,
    sample_rate: int | None = None,
) -> AudioCache:
    """:func:`open_cache` with the ``data`` section of a config: its sample rate (unless
    ``sample_rate`` is given), cache folder (unless ``cache_dir`` is given), decode
    workers (unless ``workers`` is given and non-zero), shard count and shard length.
    """
    d = cfg.data
    return open_cache(
        audio_dir,
        sample_rate or d.sample_rate,
        cache_dir=cache_dir or d.cache_dir or None,
        workers=workers or d.decode_workers,
        progress=progress,
        min_shards=d.min_shards,
        shard_seconds=d.shard_seconds,
    )
