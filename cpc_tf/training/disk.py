"""Disk space: check it before a checkpoint is written, and recognise a full disk.

A write that runs out of space mid-file leaves a truncated temporary file at best, and
can crash HDF5 (a segfault was seen with a full disk). So every checkpoint, backup and
final model is preceded by a free-space check sized from the last file of its kind (or
the model's variables when there is none yet), with a margin.
"""

from __future__ import annotations

import errno
import math
import os
import shutil

import keras

from cpc_tf.errors import DiskSpaceError
from cpc_tf.training.run_folder import format_bytes

# Free space kept beyond the estimate: HDF5 and zip overhead, run.json, history.csv, TensorBoard.
MARGIN_BYTES = 16 * 1024 * 1024
MARGIN_FACTOR = 1.25
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def variables_bytes(model: keras.Model) -> int:
    """Bytes of the model's variables and its optimizer's (what a weights file holds)."""
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        variables += list(optimizer.variables)
    return sum(math.prod(int(d or 1) for d in v.shape) * _itemsize(str(v.dtype)) for v in variables)


def _itemsize(dtype: str) -> int:
    """Bytes per element of a dtype name (``float32`` -> 4, ``bfloat16`` -> 2, ``bool`` -> 1)."""
    digits = "".join(c for c in dtype if c.isdigit())
    return max(1, int(digits) // 8) if digits else 1


def estimate_bytes(model: keras.Model, previous: str | None = None) -> int:
    """Bytes to have free before writing a weights file like `previous` (or of `model`)."""
    size = 0
    if previous and os.path.exists(previous):
        size = os.path.getsize(previous)
    size = max(size, variables_bytes(model))
    return int(size * MARGIN_FACTOR) + MARGIN_BYTES


def check_free_space(folder: str, needed: int, what: str) -> None:
    """Raise DiskSpaceError when `folder`'s file system has less than `needed` bytes free."""
    os.makedirs(folder, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskSpaceError(
            f"not enough disk space to write {what} in {folder}: {format_bytes(free)} free, "
            f"about {format_bytes(needed)} needed"
        )


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS
