"""Shard files of the cache: writing one, reading one back, and planning which files go where.

A shard is written to ``<name>.tmp`` and renamed into place when complete, so a shard
file under its final name is always whole. New files are spread over shards longest
first into the emptiest, and each shard's files are batched into decoder tasks of
similar length.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from cpc_tf.audio.files import FoundFile
from cpc_tf.audio.index import ClipInfo
from cpc_tf.fileio import join_path, remove_quietly, replace_file

TASK_SECONDS = 20.0  # short files are batched into worker tasks of about this much audio
TASK_FILES = 64


class UnreadableShard(Exception):
    """An existing shard could not be read to its end (missing, truncated, damaged)."""


class ShardWriter:
    """Writes one shard to ``<name>.tmp`` and moves it into place on :meth:`commit`."""

    def __init__(self, root: str, name: str) -> None:
        self.name = name
        self.path = join_path(root, name)
        self.tmp = self.path + ".tmp"
        self.records = 0
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
        replace_file(self.tmp, self.path, sync=False)
        return True

    def abort(self) -> None:
        """Drop the partial file."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        remove_quietly(self.tmp)


def read_records(path: str) -> Iterator[bytes]:
    """The serialized records of a shard; :class:`UnreadableShard` if it cannot be read
    to its end (errors of whatever consumes the records pass through unchanged).
    """
    it = tf.data.TFRecordDataset(path).as_numpy_iterator()
    while True:
        try:
            record = next(it)
        except StopIteration:
            return
        except tf.errors.OpError as exc:
            raise UnreadableShard(f"{path}: {exc.message}") from None
        yield record


def shard_info(name: str, records: int, clips: list[ClipInfo]) -> dict[str, Any]:
    """The index entry of a shard."""
    return {
        "name": name,
        "records": records,
        "clips": len(clips),
        "seconds": round(sum(c.duration for c in clips), 3),
    }


@dataclass
class Planned:
    """A file to decode: its estimated length and the clip id it will get."""

    found: FoundFile
    seconds: float
    clip_id: int = -1


def assign_shards(planned: list[Planned], n_shards: int) -> list[list[Planned]]:
    """Spread files over shards, longest first into the emptiest (balanced, interleaved)."""
    if n_shards <= 0:
        return []
    groups: list[list[Planned]] = [[] for _ in range(n_shards)]
    load = [0.0] * n_shards
    for p in sorted(planned, key=lambda p: (-p.seconds, p.found.rel)):
        k = min(range(n_shards), key=lambda i: (load[i], i))
        groups[k].append(p)
        load[k] += p.seconds
    return [g for g in groups if g]


def make_tasks(group: list[Planned]) -> list[list[Planned]]:
    """Batch a shard's files (longest first) into worker tasks of similar size."""
    tasks: list[list[Planned]] = []
    current: list[Planned] = []
    seconds = 0.0
    for p in group:
        if current and (seconds + p.seconds > TASK_SECONDS or len(current) >= TASK_FILES):
            tasks.append(current)
            current, seconds = [], 0.0
        current.append(p)
        seconds += p.seconds
    if current:
        tasks.append(current)
    return tasks
