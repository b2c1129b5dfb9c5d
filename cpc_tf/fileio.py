"""File-system helpers: atomic writes, and paths that may be local or remote.

Atomic writes: write a temporary file in the target's folder, then rename it. A reader
never sees a half-written file, and a process killed mid-write leaves the previous
version in place. Used by the run folder, the callbacks, the tuner and the evaluation
report alike.

Paths with a scheme (``gs://``, ``hdfs://``, TensorFlow's ``ram://``) are handled
through ``tf.io.gfile``; local paths through :mod:`os`, flushed to disk where it
matters (the audio cache). No heavy imports: TensorFlow is imported only when a
remote path is actually used, so this sits at the bottom of the package.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
from collections.abc import Callable, Iterator

# Prefix of every temporary name cpc_tf writes: clean-up removes these names only, never
# a user's own ``.tmp-*`` files.
TEMP_PREFIX = ".cpc_tf-tmp-"


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def atomic_write(save: Callable[[str], object], path: str) -> None:
    """Call ``save(tmp_path)`` and rename the result over `path`.

    The temporary name keeps the target's suffix (``.weights.h5``, ``.keras``...),
    which Keras uses to pick the file format. `save` may also write a folder (a
    SavedModel): a folder already at `path` is moved aside first and deleted once the
    new one is in place, since a rename cannot replace a non-empty folder.
    """
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    tmp = os.path.join(
        folder, f"{TEMP_PREFIX}{os.getpid()}-{name[: len(name) - len(suffix)]}{suffix}"
    )
    old = os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-old-{name}")
    try:
        save(tmp)
        if os.path.isdir(tmp) and os.path.isdir(path):
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
        _remove(old)


def remove_stale_temps(folder: str) -> None:
    """Delete the temporary files `atomic_write` left in `folder` when a process was killed.

    Only names with :data:`TEMP_PREFIX` are touched.

    Call only where no other process writes at the same time (the single writer of a
    run folder, before it starts writing).
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(TEMP_PREFIX):
            try:
                _remove(os.path.join(folder, name))  # a file, or a SavedModel folder
            except OSError:
                pass


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still runs (a process of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. no permission to signal it: it exists
        return True
    return True


def remove_stale_temps_of(path: str) -> int:
    """Delete the temporaries that killed processes left while writing `path`; returns how many.

    Safe beside other writers: only ``TEMP_PREFIX{pid}-...`` names of `path` whose process is
    gone are removed (extract and evaluate call it before writing their output).
    """
    folder, name = os.path.split(os.path.abspath(path))
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    stem = name[: len(name) - len(suffix)]
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for entry in names:
        if not entry.startswith(TEMP_PREFIX):
            continue
        pid_text, _, rest = entry[len(TEMP_PREFIX) :].partition("-")
        ours = rest in (f"{stem}{suffix}", f"old-{name}")
        if (
            pid_text.isdigit()
            and ours
            and int(pid_text) != os.getpid()
            and not pid_alive(int(pid_text))
        ):
            with contextlib.suppress(OSError):
                _remove(os.path.join(folder, entry))
                removed += 1
    return removed


def atomic_write_text(path: str, text: str) -> None:
    """Write a text file atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(write, path)


# ------------------------------------------------------------------- local or remote paths
def is_remote(path: str) -> bool:
    """True for a path with a scheme (``gs://bucket/x``), handled by ``tf.io.gfile``."""
    return "://" in path


def join_path(root: str, name: str) -> str:
    """``root/name`` with '/' for remote roots and the OS separator for local ones."""
    return posixpath.join(root, name) if is_remote(root) else os.path.join(root, name)


def list_names(folder: str) -> list[str]:
    """Names in a folder (sub-folders without a trailing '/'); [] when it does not exist."""
    if not is_remote(folder):
        try:
            return os.listdir(folder)
        except FileNotFoundError:
            return []
    import tensorflow as tf

    try:
        return [n.rstrip("/") for n in tf.io.gfile.listdir(folder)]
    except tf.errors.NotFoundError:
        return []


def remove_quietly(path: str) -> None:
    """Delete a file if it is there; errors (already gone, no permission) are ignored."""
    if not is_remote(path):
        with contextlib.suppress(OSError):
            os.remove(path)
        return
    import tensorflow as tf

    with contextlib.suppress(OSError, tf.errors.OpError):
        tf.io.gfile.remove(path)


def fsync_file(path: str) -> None:
    """Flush a finished local file to disk (best effort; remote files need no flush)."""
    if is_remote(path):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_dir(path: str) -> None:
    """Flush a local folder's entries (the renames into it) to disk (best effort)."""
    if is_remote(path) or not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_file(src: str, dst: str, sync: bool = True) -> None:
    """Atomically move a finished temporary file over ``dst`` (flushed first when ``sync``)."""
    if is_remote(dst):
        import tensorflow as tf

        tf.io.gfile.rename(src, dst, overwrite=True)
        return
    if sync:
        fsync_file(src)
    os.replace(src, dst)


@contextlib.contextmanager
def folder_lock(folder: str, name: str = ".lock") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a ``flock`` on ``folder/name``) while inside.

    Serialises the writers of one folder across processes. Remote folders, and systems
    without ``fcntl``, are not locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    if is_remote(folder):
        yield
        return
    fd = os.open(os.path.join(folder, name), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
