"""Atomic file writes: write a temporary file in the target's folder, then rename it.

A reader never sees a half-written file, and a process killed mid-write leaves the
previous version in place. Used by the run folder, the callbacks, the tuner and the
evaluation report alike. No heavy imports: this sits at the bottom of the package.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable


def atomic_write(save: Callable[[str], object], path: str) -> None:
    """Call ``save(tmp_path)`` and rename the result over `path`.

    The temporary name keeps the target's suffix (``.weights.h5``, ``.keras``...),
    which Keras uses to pick the file format.
    """
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{name[: len(name) - len(suffix)]}{suffix}")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_stale_temps(folder: str) -> None:
    """Delete the temporary files `atomic_write` left in `folder` when a process was killed.

    Call only where no other process writes at the same time (the single writer of a
    run folder, before it starts writing).
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(".tmp-"):
            path = os.path.join(folder, name)
            try:
                if os.path.isdir(path):  # an exported SavedModel folder
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            except OSError:
                pass


def atomic_write_text(path: str, text: str) -> None:
    """Write a text file atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(write, path)
