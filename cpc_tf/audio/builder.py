"""Building and updating a cache folder: plan, copy surviving shards, decode, commit."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from cpc_tf.audio import files as audio_files
from cpc_tf.audio._fs import (
    _fsync_dir,
    _fsync_file,
    _is_remote,
    _join,
    _listdir,
    _remove,
    _replace,
)
from cpc_tf.audio.files import CacheDecodeResult, FoundFile, ScanResult, SkippedFile
from cpc_tf.audio.index import (
    INDEX_FORMAT,
    INDEX_VERSION,
    ClipInfo,
    _clip_from_json,
    _clip_to_json,
    _read_index,
    _write_index,
)
from cpc_tf.audio.pool import _DecodePool, available_cpus
from cpc_tf.audio.records import RECORD_SECONDS, _record_clip_id, serialize_record
from cpc_tf.errors import DataError

_SHARD_RE = re.compile(r"^shard-\d{5}-\d{5}\.tfrecord$")
_TASK_SECONDS = 20.0     # short files are batched into worker tasks of about this much audio
_TASK_FILES = 64
_SPOOL_SAMPLES = 1 << 20  # worker results longer than this travel through a spool file


class CacheUpdate:
    """What the last :func:`open_cache` call did."""

    decoded: int = 0          # files handed to the decoder (including ones that failed)
    reused: int = 0           # clips taken over unchanged from the previous cache
    removed: int = 0          # clips dropped because their file changed or disappeared
    shards_written: int = 0
    shards_removed: int = 0
    seconds: float = 0.0


def _crash_result(item: tuple[str, str]) -> CacheDecodeResult:
    return CacheDecodeResult(item[1], reason=audio_files.REASON_CORRUPT,
                             detail="the decoder crashed on this file")


# ------------------------------------------------------------------- shard writing
class _ShardWriter:
    """Writes one shard to ``<name>.tmp`` and moves it into place on :meth:`commit`."""

    def __init__(self, root: str, name: str) -> None:
        self.name = name
        self.path = _join(root, name)
        self.tmp = self.path + ".tmp"
        self.records = 0
        self.clips = 0
        self.samples = 0
        self._writer: tf.io.TFRecordWriter | None = None

    def write(self, record: bytes) -> None:
        """Append one serialized record."""
        if self._writer is None:
            self._writer = tf.io.TFRecordWriter(self.tmp)
        self._writer.write(record)
        self.records += 1

    def commit(self) -> bool:
        """Close and move into place; False (and nothing left behind) when empty."""
        if self._writer is None:
            return False
        self._writer.close()
        self._writer = None
        _replace(self.tmp, self.path, sync=False)
        return True

    def abort(self) -> None:
        """Drop the partial file."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        _remove(self.tmp)


# ------------------------------------------------------------------- building
@dataclass
class _Planned:
    found: FoundFile
    seconds: float
    clip_id: int = -1


@dataclass
class _BuildSettings:
    workers: int
    progress: bool
    min_shards: int
    shard_seconds: float
    quality: str = "HQ"
    record_seconds: float = RECORD_SECONDS


@dataclass
class _Builder:
    """One build or update of a cache folder (run under the cache lock)."""

    root: str
    audio_dir: str
    sample_rate: int
    scan: ScanResult
    settings: _BuildSettings
    update: CacheUpdate = field(default_factory=CacheUpdate)
    _written: list[str] = field(default_factory=list)   # shard files this build created
    _syncs: list[Future[None]] = field(default_factory=list)
    _syncer: ThreadPoolExecutor | None = None

    def _sync_later(self, path: str) -> None:
        """fsync a finished shard in a background thread (waited for before the index)."""
        if _is_remote(path):
            return
        if self._syncer is None:
            self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpc_tf_fsync")
        self._syncs.append(self._syncer.submit(_fsync_file, path))

    def _write_index_durably(self, index: dict[str, Any]) -> None:
        for f in self._syncs:
            f.result()
        _fsync_dir(self.root)  # the shards' renames, before the index that names them
        _write_index(self.root, index)

    @property
    def record_samples(self) -> int:
        return max(1, int(round(self.settings.record_seconds * self.sample_rate)))

    def _new_index(self, old: dict[str, Any] | None) -> dict[str, Any]:
        return {"format": INDEX_FORMAT, "version": INDEX_VERSION, "audio_dir": self.audio_dir,
                "sample_rate": self.sample_rate, "record_seconds": self.settings.record_seconds,
                "generation": int(old["generation"]) if old else 0,
                "next_clip_id": int(old.get("next_clip_id", 0)) if old else 0,
                "clips": [], "skipped": [], "shards": []}

    def run(self) -> dict[str, Any]:
        old = _read_index(self.root)
        if old is not None and (os.path.realpath(old["audio_dir"]) != os.path.realpath(self.audio_dir)
                                or old["sample_rate"] != self.sample_rate
                                or float(old.get("record_seconds", 0)) != self.settings.record_seconds):
            old = None  # another folder hashed here, or another layout: rebuild from scratch
        on_disk = set(_listdir(self.root))
        self._remove_debris(old, on_disk)
        on_disk = set(_listdir(self.root))

        old_clips = {c["path"]: _clip_from_json(c) for c in old["clips"]} if old else {}
        old_skipped = {s["path"]: s for s in old["skipped"]} if old else {}
        old_shards = {s["name"]: s for s in old["shards"]} if old else {}
        kept: list[ClipInfo] = []
        skipped: list[dict[str, Any]] = [self._skip_json(s) for s in self.scan.skipped]
        todo: list[FoundFile] = []
        for f in self.scan.files:
            c = old_clips.get(f.rel)
            if c is not None and c.size == f.size and c.mtime_ns == f.mtime_ns and c.shard in on_disk \
                    and c.shard in old_shards:
                kept.append(c)
                continue
            s = old_skipped.get(f.rel)
            if s is not None and s.get("size") == f.size and s.get("mtime_ns") == f.mtime_ns:
                skipped.append(s)
                continue
            todo.append(f)
        kept_paths = {c.path for c in kept}
        dropped = [c for c in old_clips.values() if c.path not in kept_paths]
        affected = {c.shard for c in dropped}
        self.update.reused = len(kept)
        self.update.removed = len(dropped)

        index = self._new_index(old)
        if old is not None and not todo and not dropped:
            if _skip_keys(skipped) != _skip_keys(old["skipped"]):
                index.update(clips=old["clips"], shards=old["shards"], skipped=skipped)
                _write_index(self.root, index)
                return index
            return old
        index["generation"] += 1
        gen = index["generation"]

        pool: _DecodePool | None = None
        spool_dir: str | None = None
        finished = False
        estimates: dict[str, float] = {}  # rel path -> seconds, filled in by the header probe

        def task_seconds(task: list[tuple[str, str]]) -> float:
            return sum(estimates.get(rel, 1.0) for _, rel in task)

        def make_pool(n_files: int) -> _DecodePool:
            # started before headers are read and shards copied, so the workers boot meanwhile
            nonlocal spool_dir
            spool_dir = self._make_spool_dir()
            fn = functools.partial(audio_files.decode_for_cache, sample_rate=self.sample_rate,
                                   spool_dir=spool_dir, quality=self.settings.quality,
                                   spool_samples=_SPOOL_SAMPLES)
            workers = max(1, min(self.settings.workers or available_cpus(), n_files))
            new_pool = _DecodePool(workers, fn, _crash_result, cost=task_seconds)
            new_pool.start()
            return new_pool

        try:
            if todo:
                pool = make_pool(len(todo))
            # 1. shards that lost clips: copy the surviving records into new shards
            kept_shards = {c.shard for c in kept}
            shards: list[dict[str, Any]] = [s for n, s in old_shards.items()
                                            if n not in affected and n in kept_shards]
            survivors: dict[str, list[ClipInfo]] = {}
            for c in kept:
                if c.shard in affected:
                    survivors.setdefault(c.shard, []).append(c)
            serial = 0
            for old_name in sorted(survivors):
                new_name = _shard_name(gen, serial)
                info = self._copy_shard(old_name, new_name, survivors[old_name])
                if info is None:  # the old shard is unreadable: decode its clips again
                    lost = {c.path for c in survivors[old_name]}
                    kept = [c for c in kept if c.path not in lost]
                    todo.extend(f for f in self.scan.files if f.rel in lost)
                    self.update.reused -= len(lost)
                    self.update.removed += len(lost)
                    continue
                shards.append(info)
                serial += 1
            todo.sort(key=lambda f: f.rel)

            # 2. read headers of the files to decode, plan the new shards
            planned = self._probe(todo, skipped)
            estimates.update((p.found.rel, p.seconds) for p in planned)
            next_id = index["next_clip_id"]
            for p in planned:
                p.clip_id = next_id
                next_id += 1
            index["next_clip_id"] = next_id
            groups = _assign_shards(planned, self._count_new_shards(planned, len(shards)))

            # 3. decode into the new shards
            new_clips: list[ClipInfo] = []
            if planned:
                if pool is None:
                    pool = make_pool(len(planned))
                new_clips = self._decode(pool, groups, gen, serial, shards, skipped)

            # 4. the index, then the superseded shards
            clips = kept + new_clips
            if not clips:
                counts = Counter(s["reason"] for s in skipped)
                what = ", ".join(f"{r}: {n}" for r, n in counts.most_common())
                raise DataError(f"none of the {len(self.scan.files) + len(self.scan.skipped)} audio files "
                                f"in {self.audio_dir} could be decoded ({what})")
            index["clips"] = [_clip_to_json(c) for c in sorted(clips, key=lambda c: c.path)]
            index["skipped"] = sorted(skipped, key=lambda s: s["path"])
            index["shards"] = sorted(shards, key=lambda s: s["name"])
            self._write_index_durably(index)
            finished = True
        except BaseException:
            for path in self._written:
                _remove(path)
            raise
        finally:
            if pool is not None:
                pool.close(wait=finished)  # on an error or Ctrl-C, do not wait for running decodes
            if self._syncer is not None:
                self._syncer.shutdown(wait=True)
            if spool_dir is not None:
                shutil.rmtree(spool_dir, ignore_errors=True)
        for name in sorted(set(old_shards) - {s["name"] for s in index["shards"]}):
            _remove(_join(self.root, name))
            self.update.shards_removed += 1
        return index

    # -- steps
    def _remove_debris(self, old: dict[str, Any] | None, on_disk: set[str]) -> None:
        referenced = {s["name"] for s in old["shards"]} if old else set()
        for name in on_disk:
            path = _join(self.root, name)
            if name.endswith(".tmp") or (_SHARD_RE.match(name) and name not in referenced):
                _remove(path)
            elif name.startswith(".spool-") and not _is_remote(path):
                shutil.rmtree(path, ignore_errors=True)

    def _make_spool_dir(self) -> str:
        if not _is_remote(self.root):
            path = os.path.join(self.root, f".spool-{uuid.uuid4().hex[:12]}")
            os.makedirs(path)
            return path
        return tempfile.mkdtemp(prefix="cpc_tf_spool_")

    def _skip_json(self, s: SkippedFile, f: FoundFile | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"path": s.path, "reason": s.reason, "detail": s.detail}
        if f is not None:
            d.update(size=f.size, mtime_ns=f.mtime_ns)
        return d

    def _copy_shard(self, old_name: str, new_name: str, clips: list[ClipInfo]) -> dict[str, Any] | None:
        wanted = {c.clip_id for c in clips}
        seen: Counter[int] = Counter()
        writer = _ShardWriter(self.root, new_name)
        try:
            for record in tf.data.TFRecordDataset(_join(self.root, old_name)).as_numpy_iterator():
                clip_id = _record_clip_id(record)
                if clip_id in wanted:
                    writer.write(record)
                    seen[clip_id] += 1
        except tf.errors.OpError:
            writer.abort()
            return None
        except BaseException:
            writer.abort()
            raise
        if any(seen[c.clip_id] != c.records for c in clips):  # damaged or foreign shard
            writer.abort()
            return None
        self._written.append(writer.path)
        if not writer.commit():
            return None
        self._sync_later(writer.path)
        self.update.shards_written += 1
        for c in clips:
            c.shard = new_name
        return {"name": new_name, "records": writer.records, "clips": len(clips),
                "seconds": round(sum(c.duration for c in clips), 3)}

    def _probe(self, todo: list[FoundFile], skipped: list[dict[str, Any]]) -> list[_Planned]:
        planned: list[_Planned] = []
        bar = _progress_bar(len(todo), "reading headers", self.settings.progress and len(todo) >= 500)
        try:
            for f in todo:
                try:
                    probe = audio_files.probe_audio(f.path)
                except audio_files.AudioFileError as exc:
                    skipped.append(self._skip_json(SkippedFile(f.rel, exc.reason, exc.detail), f))
                    self.update.decoded += 1
                else:
                    planned.append(_Planned(f, audio_files.estimate_seconds(probe)))
                bar.update(1)
        finally:
            bar.close()
        return planned

    def _count_new_shards(self, planned: list[_Planned], existing: int) -> int:
        if not planned:
            return 0
        total = sum(p.seconds for p in planned)
        want = max(math.ceil(total / self.settings.shard_seconds), self.settings.min_shards - existing, 1)
        return min(len(planned), want)

    def _decode(self, pool: _DecodePool, groups: list[list[_Planned]], gen: int, first_serial: int,
                shards: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> list[ClipInfo]:
        tasks: list[tuple[int, list[_Planned]]] = [(g, t) for g, group in enumerate(groups)
                                                   for t in _make_tasks(group)]
        by_rel = {p.found.rel: p for group in groups for p in group}
        clips: list[ClipInfo] = []
        bar = _progress_bar(len(by_rel), "decoding audio", self.settings.progress)
        writer: _ShardWriter | None = None
        writer_group = -1
        serial = first_serial
        shard_clips: list[ClipInfo] = []

        def finish() -> None:
            nonlocal writer, serial
            if writer is None:
                return
            self._written.append(writer.path)
            if writer.commit():
                self._sync_later(writer.path)
                shards.append({"name": writer.name, "records": writer.records, "clips": len(shard_clips),
                               "seconds": round(sum(c.duration for c in shard_clips), 3)})
                self.update.shards_written += 1
                serial += 1
            writer = None

        items = ([(p.found.path, p.found.rel) for p in task] for _, task in tasks)
        try:
            for (group, _task), results in zip(tasks, pool.imap(items)):
                if group != writer_group:
                    finish()
                    writer = _ShardWriter(self.root, _shard_name(gen, serial))
                    writer_group = group
                    shard_clips = []
                assert writer is not None
                for res in results:
                    p = by_rel[res.rel]
                    self.update.decoded += 1
                    if not res.ok:
                        skipped.append(self._skip_json(SkippedFile(res.rel, res.reason, res.detail), p.found))
                        continue
                    records = self._write_clip(writer, res, p.clip_id)
                    clip = ClipInfo(clip_id=p.clip_id, path=res.rel,
                                    duration=round(res.num_samples / self.sample_rate, 6),
                                    num_samples=res.num_samples, orig_sample_rate=res.orig_sample_rate,
                                    silent=res.silent, shard=writer.name, records=records,
                                    channels=res.channels, size=p.found.size, mtime_ns=p.found.mtime_ns)
                    clips.append(clip)
                    shard_clips.append(clip)
                bar.update(len(results))
            finish()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            bar.close()
        return clips

    def _write_clip(self, writer: _ShardWriter, res: CacheDecodeResult, clip_id: int) -> int:
        step = self.record_samples
        count = 0
        try:
            for start in range(0, res.num_samples, step):
                n = min(step, res.num_samples - start)
                if res.pcm is not None:
                    pcm = res.pcm[start:start + n]
                else:
                    assert res.spool is not None
                    pcm = audio_files.read_spool(res.spool, start, n)
                writer.write(serialize_record(pcm, clip_id, start, res.rel))
                count += 1
        finally:
            if res.spool is not None:
                with contextlib.suppress(OSError):
                    os.remove(res.spool)
        return count


def _skip_keys(skipped: Iterable[dict[str, Any]]) -> set[tuple[str, str, Any, Any]]:
    return {(s["path"], s["reason"], s.get("size"), s.get("mtime_ns")) for s in skipped}


def _shard_name(generation: int, serial: int) -> str:
    return f"shard-{generation:05d}-{serial:05d}.tfrecord"


def _assign_shards(planned: list[_Planned], n_shards: int) -> list[list[_Planned]]:
    """Spread files over shards, longest first into the emptiest (balanced, interleaved)."""
    if n_shards <= 0:
        return []
    groups: list[list[_Planned]] = [[] for _ in range(n_shards)]
    load = [0.0] * n_shards
    for p in sorted(planned, key=lambda p: (-p.seconds, p.found.rel)):
        k = min(range(n_shards), key=lambda i: (load[i], i))
        groups[k].append(p)
        load[k] += p.seconds
    return [g for g in groups if g]


def _make_tasks(group: list[_Planned]) -> list[list[_Planned]]:
    """Batch a shard's files (longest first) into worker tasks of similar size."""
    tasks: list[list[_Planned]] = []
    current: list[_Planned] = []
    seconds = 0.0
    for p in group:
        if current and (seconds + p.seconds > _TASK_SECONDS or len(current) >= _TASK_FILES):
            tasks.append(current)
            current, seconds = [], 0.0
        current.append(p)
        seconds += p.seconds
    if current:
        tasks.append(current)
    return tasks


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    show = bool(enabled) and total > 0 and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="file", disable=not show, leave=False, dynamic_ncols=True)
