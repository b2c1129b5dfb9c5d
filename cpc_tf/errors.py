"""Error types that the command line turns into one clear line and an exit code.

`ConfigError` (exit 2) covers usage and configuration mistakes; `DataError` (exit 1)
covers problems with the audio, the cache, run folders and embedding files.
"""

from __future__ import annotations


class CpcTfError(Exception):
    """Base class of every error that the CLI reports without a traceback."""

    exit_code: int = 1


class ConfigError(CpcTfError):
    """A usage or configuration mistake: unknown key, wrong type, bad range, bad YAML."""

    exit_code = 2


class DataError(CpcTfError):
    """A problem with the data: missing or empty folder, no decodable audio, bad run folder."""

    exit_code = 1


class TrainingError(CpcTfError):
    """Training stopped for a reason the user must act on (NaN loss, unwritable folder)."""

    exit_code = 1


class ResourceError(DataError):
    """The machine, not the data, failed: a full disk or quota, no memory, an I/O error on
    the cache side. Nothing is recorded against the files involved; the command stops,
    the previous state stays in place, and a rerun once the fault is fixed picks up.
    """

    exit_code = 1


class InputError(DataError, ValueError):
    """Bad input to the Python API (``cpc_tf.load``, ``Embedder.embed``): also a ValueError.

    The CLI reports it like any :class:`DataError` (one line, exit code 1).
    """


class DiskSpaceError(TrainingError):
    """The disk (or quota) is full, or too full for the next checkpoint: free space, then
    --resume.
    """

    exit_code = 1
