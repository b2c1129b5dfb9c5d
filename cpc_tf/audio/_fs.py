"""File-system helpers of the cache: local paths and tf.io.gfile (gs://, hdfs://) alike."""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Iterator

import tensorflow as tf


def _is_remote(path: str) -> bool:
    return "://" in path


def _join(root: str, name: str) -> str:
    return posixpath.join(root, name) if _is_remote(root) else os.path.join(root, name)


def _listdir(root: str) -> list[str]:
    try:
        return [n.rstrip("/") for n in tf.io.gfile.listdir(root)]
    except tf.errors.NotFoundError:
        return []


def _remove(path: str) -> None:
    with contextlib.suppress(OSError, tf.errors.NotFoundError):
        if _is_remote(path):
            tf.io.gfile.remove(path)
        else:
            os.remove(path)


def _fsync_file(path: str) -> None:
    if _is_remote(path):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(path: str) -> None:
    if _is_remote(path) or not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace(src: str, dst: str, sync: bool = True) -> None:
    """Atomically move a finished ``*.tmp`` file into place (flushed to disk first when
    ``sync``; shards are flushed later, in the background, but before the index)."""
    if _is_remote(dst):
        tf.io.gfile.rename(src, dst, overwrite=True)
    else:
        if sync:
            _fsync_file(src)
        os.replace(src, dst)


@contextlib.contextmanager
def _cache_lock(root: str) -> Iterator[None]:
    """Serialise builders of one cache (local folders only; remote ones are unlocked)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    if _is_remote(root):
        yield
        return
    fd = os.open(os.path.join(root, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
