"""Building or updating one cache folder, in four steps: plan, copy, decode, commit.

* **plan**: compare the folder with the previous index: clips whose file kept its size
  and mtime are reused, files skipped before for the same reason stay skipped, the
  rest is decoded; debris of killed builds is removed first.
* **copy**: shards that lost clips are rewritten into new shards from their surviving
  records (no decoding); a shard that cannot be read has its clips decoded again.
* **decode**: new and changed files are decoded in parallel into new shards.
* **commit**: the shards are flushed, the index is written, and only then are the
  superseded shards deleted.

A build that dies at any point therefore leaves the previous index pointing at
untouched shards. Run it under the cache's lock (:func:`cpc_tf.fileio.folder_lock`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cpc_tf.audio import files as audio_files
from cpc_tf.audio.files import CacheDecodeResult, FoundFile, ScanResult, SkippedFile
from cpc_tf.audio.index import (
    ClipInfo,
    clip_from_json,
    clip_to_json,
    is_environment_skip,
    make_spool_dir,
    new_index,
    read_index,
    remove_debris,
    shard_name,
    skip_keys,
    skip_to_json,
    write_index,
)
from cpc_tf.audio.pool import DecodePool, available_cpus
from cpc_tf.audio.records import RECORD_SECONDS, record_clip_id, serialize_record
from cpc_tf.audio.report import progress_bar
from cpc_tf.audio.shards import (
    Planned,
    ShardWriter,
    UnreadableShard,
    assign_shards,
    make_tasks,
    read_records,
    shard_info,
)
from cpc_tf.errors import DataError
from cpc_tf.fileio import (
    fsync_dir,
    fsync_file,
    is_remote,
    join_path,
    list_names,
    remove_quietly,
)

SPOOL_SAMPLES = 1 << 20  # worker results longer than this travel through a spool file


@dataclass
class CacheUpdate:
    """What the last :func:`open_cache` call did."""

    decoded: int = 0  # files handed to the decoder (including ones that failed)
    reused: int = 0  # clips taken over unchanged from the previous cache
    removed: int = 0  # clips dropped because their file changed or disappeared
    shards_written: int = 0
    shards_removed: int = 0
    seconds: float = 0.0


@dataclass
class BuildSettings:
    """How to build: decoders, progress bars, shard sizes, resampling, record length."""

    workers: int
    progress: bool
    min_shards: int
    shard_seconds: float
    quality: str = "HQ"
    record_seconds: float = RECORD_SECONDS


@dataclass
class _Plan:
    """The outcome of the plan step (``copy`` may move clips from ``kept`` to ``todo``)."""

    old: dict[str, Any] | None  # the previous index, None to build from scratch
    kept: list[ClipInfo]  # clips reused as they are
    dropped: list[ClipInfo]  # clips of the previous index that are gone or changed
    skipped: list[dict[str, Any]]  # skip entries of the new index (grows while decoding)
    todo: list[FoundFile]  # files to decode

    def old_shards(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.old["shards"]} if self.old else {}


@dataclass
class _OpenShard:
    writer: ShardWriter
    clips: list[ClipInfo] = field(default_factory=list)


def crash_result(item: tuple[str, str]) -> CacheDecodeResult:
    """The result of a file whose decoder process died (a crash in a decoding library)."""
    return CacheDecodeResult(
        item[1], reason=audio_files.REASON_CORRUPT, detail="the decoder crashed on this file"
    )


@dataclass
class Builder:
    """One build or update of a cache folder (run under the cache lock)."""

    root: str
    audio_dir: str
    sample_rate: int
    scan: ScanResult
    settings: BuildSettings
    update: CacheUpdate = field(default_factory=CacheUpdate)
    _written: list[str] = field(default_factory=list)  # shard files this build created
    _syncs: list[Future[None]] = field(default_factory=list)
    _syncer: ThreadPoolExecutor | None = None
    _pool: DecodePool | None = None
    _spool_dir: str | None = None
    _estimates: dict[str, float] = field(default_factory=dict)  # rel path -> seconds, from headers

    def run(self) -> dict[str, Any]:
        """Bring the cache up to date; returns the index now on disk."""
        plan = self._plan()
        index = new_index(self.audio_dir, self.sample_rate, self.settings.record_seconds, plan.old)
        if plan.old is not None and not plan.todo and not plan.dropped:
            return self._refresh_skips(plan, index)
        index["generation"] += 1
        gen = index["generation"]
        finished = False
        try:
            if plan.todo:
                self._start_pool(len(plan.todo))  # the workers boot while shards are copied
            shards, serial = self._copy(plan, gen)
            planned = self._probe(plan.todo, plan.skipped)
            for p in planned:
                p.clip_id = index["next_clip_id"]
                index["next_clip_id"] += 1
            new_clips = self._decode(planned, gen, serial, shards, plan.skipped)
            self._commit(index, plan.kept + new_clips, plan.skipped, shards)
            finished = True
        except BaseException:
            for path in self._written:
                remove_quietly(path)
            raise
        finally:
            self._stop(wait=finished)  # on an error or Ctrl-C, do not wait for running decodes
        for name in sorted(set(plan.old_shards()) - {s["name"] for s in index["shards"]}):
            remove_quietly(join_path(self.root, name))
            self.update.shards_removed += 1
        return index

    # -- plan
    def _plan(self) -> _Plan:
        old = read_index(self.root)
        if old is not None and (
            os.path.realpath(old["audio_dir"]) != os.path.realpath(self.audio_dir)
            or old["sample_rate"] != self.sample_rate
            or float(old.get("record_seconds", 0)) != self.settings.record_seconds
        ):
            old = None  # another folder hashed here, or another layout: rebuild from scratch
        remove_debris(self.root, {s["name"] for s in old["shards"]} if old else set())
        on_disk = set(list_names(self.root))
        old_clips = {c["path"]: clip_from_json(c) for c in old["clips"]} if old else {}
        old_skipped = {s["path"]: s for s in old["skipped"]} if old else {}
        plan = _Plan(old, [], [], [skip_to_json(s) for s in self.scan.skipped], [])
        old_shards = plan.old_shards()
        for f in self.scan.files:
            c = old_clips.get(f.rel)
            if (
                c is not None
                and c.size == f.size
                and c.mtime_ns == f.mtime_ns
                and c.shard in on_disk
                and c.shard in old_shards
            ):
                plan.kept.append(c)
                continue
            s = old_skipped.get(f.rel)
            if (
                s is not None
                and s.get("size") == f.size
                and s.get("mtime_ns") == f.mtime_ns
                and not is_environment_skip(s)
            ):
                plan.skipped.append(s)
                continue
            plan.todo.append(f)
        kept_paths = {c.path for c in plan.kept}
        plan.dropped = [c for c in old_clips.values() if c.path not in kept_paths]
        self.update.reused = len(plan.kept)
        self.update.removed = len(plan.dropped)
        return plan

    def _refresh_skips(self, plan: _Plan, index: dict[str, Any]) -> dict[str, Any]:
        """Nothing to decode or drop: rewrite the index only if the skip list changed."""
        assert plan.old is not None
        if skip_keys(plan.skipped) == skip_keys(plan.old["skipped"]):
            return plan.old
        index.update(clips=plan.old["clips"], shards=plan.old["shards"], skipped=plan.skipped)
        write_index(self.root, index)
        return index

    # -- copy
    def _copy(self, plan: _Plan, gen: int) -> tuple[list[dict[str, Any]], int]:
        """Rewrite the shards that lost clips; returns the shard entries kept or written so
        far and the serial number of the next new shard.
        """
        affected = {c.shard for c in plan.dropped}
        kept_shards = {c.shard for c in plan.kept}
        shards = [s for n, s in plan.old_shards().items() if n not in affected and n in kept_shards]
        survivors: dict[str, list[ClipInfo]] = {}
        for c in plan.kept:
            if c.shard in affected:
                survivors.setdefault(c.shard, []).append(c)
        serial = 0
        for old_name in sorted(survivors):
            info = self._copy_shard(old_name, shard_name(gen, serial), survivors[old_name])
            if info is None:  # the old shard is unreadable: decode its clips again
                lost = {c.path for c in survivors[old_name]}
                plan.kept = [c for c in plan.kept if c.path not in lost]
                plan.todo.extend(f for f in self.scan.files if f.rel in lost)
                self.update.reused -= len(lost)
                self.update.removed += len(lost)
                continue
            shards.append(info)
            serial += 1
        plan.todo.sort(key=lambda f: f.rel)
        return shards, serial

    def _copy_shard(
        self, old_name: str, new_name: str, clips: list[ClipInfo]
    ) -> dict[str, Any] | None:
        wanted = {c.clip_id for c in clips}
        seen: Counter[int] = Counter()
        writer = ShardWriter(self.root, new_name)
        try:
            for record in read_records(join_path(self.root, old_name)):
                clip_id = record_clip_id(record)
                if clip_id in wanted:
                    writer.write(record)
                    seen[clip_id] += 1
        except UnreadableShard:
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
        return shard_info(new_name, writer.records, clips)

    # -- decode
    def _start_pool(self, n_files: int) -> None:
        self._spool_dir = make_spool_dir(self.root)
        fn = functools.partial(
            audio_files.decode_for_cache,
            sample_rate=self.sample_rate,
            spool_dir=self._spool_dir,
            quality=self.settings.quality,
            spool_samples=SPOOL_SAMPLES,
        )
        workers = max(1, min(self.settings.workers or available_cpus(), n_files))
        self._pool = DecodePool(
            workers, fn, crash_result, cost=self._task_seconds, initializer=audio_files.worker_init
        )
        self._pool.start()

    def _task_seconds(self, task: list[tuple[str, str]]) -> float:
        return sum(self._estimates.get(rel, 1.0) for _, rel in task)

    def _probe(self, todo: list[FoundFile], skipped: list[dict[str, Any]]) -> list[Planned]:
        """Read the headers of the files to decode (for planning); bad ones are skipped."""
        planned: list[Planned] = []
        bar = progress_bar(
            len(todo), "reading headers", self.settings.progress and len(todo) >= 500
        )
        try:
            for f in todo:
                try:
                    probe = audio_files.probe_audio(f.path)
                except audio_files.AudioFileError as exc:
                    skipped.append(skip_to_json(SkippedFile(f.rel, exc.reason, exc.detail), f))
                    self.update.decoded += 1
                else:
                    planned.append(Planned(f, audio_files.estimate_seconds(probe)))
                    self._estimates[f.rel] = planned[-1].seconds
                bar.update(1)
        finally:
            bar.close()
        return planned

    def _count_new_shards(self, planned: list[Planned], existing: int) -> int:
        if not planned:
            return 0
        total = sum(p.seconds for p in planned)
        want = max(
            math.ceil(total / self.settings.shard_seconds), self.settings.min_shards - existing, 1
        )
        return min(len(planned), want)

    def _decode(
        self,
        planned: list[Planned],
        gen: int,
        serial: int,
        shards: list[dict[str, Any]],
        skipped: list[dict[str, Any]],
    ) -> list[ClipInfo]:
        """Decode the planned files into new shards (serials from ``serial`` on)."""
        if not planned:
            return []
        if self._pool is None:
            self._start_pool(len(planned))
        assert self._pool is not None
        groups = assign_shards(planned, self._count_new_shards(planned, len(shards)))
        tasks = [(g, task) for g, group in enumerate(groups) for task in make_tasks(group)]
        by_rel = {p.found.rel: p for p in planned}
        clips: list[ClipInfo] = []
        shard: _OpenShard | None = None
        shard_group = -1
        bar = progress_bar(len(by_rel), "decoding audio", self.settings.progress)
        items = ([(p.found.path, p.found.rel) for p in task] for _, task in tasks)
        try:
            for (group, _task), results in zip(tasks, self._pool.imap(items)):
                if group != shard_group:
                    if shard is not None and self._finish_shard(shard, shards):
                        serial += 1
                    shard, shard_group = (
                        _OpenShard(ShardWriter(self.root, shard_name(gen, serial))),
                        group,
                    )
                assert shard is not None  # opened for the first group above
                for res in results:
                    clip = self._take(res, by_rel[res.rel], shard, skipped)
                    if clip is not None:
                        clips.append(clip)
                bar.update(len(results))
            if shard is not None:
                self._finish_shard(shard, shards)
                shard = None
        except BaseException:
            if shard is not None:
                shard.writer.abort()
            raise
        finally:
            bar.close()
        return clips

    def _take(
        self, res: CacheDecodeResult, p: Planned, shard: _OpenShard, skipped: list[dict[str, Any]]
    ) -> ClipInfo | None:
        """Write one decoded file into the open shard (or list it as skipped)."""
        self.update.decoded += 1
        if not res.ok:
            skipped.append(skip_to_json(SkippedFile(res.rel, res.reason, res.detail), p.found))
            return None
        records = self._write_clip(shard.writer, res, p.clip_id)
        clip = ClipInfo(
            clip_id=p.clip_id,
            path=res.rel,
            duration=round(res.num_samples / self.sample_rate, 6),
            num_samples=res.num_samples,
            orig_sample_rate=res.orig_sample_rate,
            silent=res.silent,
            shard=shard.writer.name,
            records=records,
            channels=res.channels,
            size=p.found.size,
            mtime_ns=p.found.mtime_ns,
            clipped=res.clipped,
        )
        shard.clips.append(clip)
        return clip

    def _write_clip(self, writer: ShardWriter, res: CacheDecodeResult, clip_id: int) -> int:
        step = max(1, int(round(self.settings.record_seconds * self.sample_rate)))
        count = 0
        try:
            for start in range(0, res.num_samples, step):
                n = min(step, res.num_samples - start)
                if res.pcm is not None:
                    pcm = res.pcm[start : start + n]
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

    def _finish_shard(self, shard: _OpenShard, shards: list[dict[str, Any]]) -> bool:
        """Move a new shard into place; False when it stayed empty (no file decoded)."""
        self._written.append(shard.writer.path)
        if not shard.writer.commit():
            return False
        self._sync_later(shard.writer.path)
        shards.append(shard_info(shard.writer.name, shard.writer.records, shard.clips))
        self.update.shards_written += 1
        return True

    # -- commit
    def _commit(
        self,
        index: dict[str, Any],
        clips: list[ClipInfo],
        skipped: list[dict[str, Any]],
        shards: list[dict[str, Any]],
    ) -> None:
        if not clips:
            counts = Counter(s["reason"] for s in skipped)
            what = ", ".join(f"{r}: {n}" for r, n in counts.most_common())
            raise DataError(
                f"none of the {len(self.scan.files) + len(self.scan.skipped)} audio files "
                f"in {self.audio_dir} could be decoded ({what})"
            )
        index["clips"] = [clip_to_json(c) for c in sorted(clips, key=lambda c: c.path)]
        index["skipped"] = sorted(skipped, key=lambda s: s["path"])
        index["shards"] = sorted(shards, key=lambda s: s["name"])
        for f in self._syncs:
            f.result()
        fsync_dir(self.root)  # the shards' renames, before the index that names them
        write_index(self.root, index)

    def _sync_later(self, path: str) -> None:
        """Fsync a finished shard in a background thread (waited for before the index)."""
        if is_remote(path):
            return
        if self._syncer is None:
            self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpc_tf_fsync")
        self._syncs.append(self._syncer.submit(fsync_file, path))

    def _stop(self, wait: bool) -> None:
        if self._pool is not None:
            self._pool.close(wait=wait)
        if self._syncer is not None:
            self._syncer.shutdown(wait=True)
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
