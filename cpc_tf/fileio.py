"""Atomic file writes: write a temporary file in the target's folder, then rename it.

A reader never sees a half-written file, and a process killed mid-write leaves the
previous version in place. Used by the run folder, the callbacks, the tuner and the
evaluation report alike. No heavy imports: this sits at the bottom of the package.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

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
    tmp = os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{name[: len(name) - len(suffix)]}{suffix}")
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


def atomic_write_text(path: str, text: str) -> None:
    """Write a text file atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(write, path)
