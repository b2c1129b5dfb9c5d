"""Loading ``.keras`` files: Keras' safe mode, and every way it fails as one line.

The one place that turns Keras' loading errors into words a user can act on; the run folder
(:func:`cpc_tf.training.load_run_model`) and the Python API (:func:`cpc_tf.load`) both load
through :func:`load_keras_file`.
"""

from __future__ import annotations

import os
import re
import zipfile
from typing import Any

from cpc_tf.checks import clip
from cpc_tf.errors import DataError


class ModelFileError(DataError):
    """A .keras file that cannot be loaded; ``reason`` is the message without the path."""

    def __init__(self, path: str, reason: str, lead: str = "") -> None:
        super().__init__(f"{path} {lead}{reason}")
        self.reason = reason


def load_keras_file(path: str, compile: bool = True) -> Any:  # noqa: A002  (Keras' own name)
    """``keras.saving.load_model(path)`` in safe mode, its failures as one :class:`DataError`.

    A folder, a truncated or foreign file, a class no registered layer provides (another
    project's model) and a ``Lambda`` layer (Python code, which safe mode does not run) each
    get a line that says which.
    """
    import keras

    import cpc_tf.models  # noqa: F401  (registers the classes a cpc_tf .keras file names)

    if os.path.isdir(path):
        raise ModelFileError(path, "is a folder, not a .keras file")
    if not os.path.isfile(path):
        raise ModelFileError(path, "does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(path, "is not a .keras file (not a zip archive: truncated?)")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # noqa: BLE001  (Keras raises TypeError/ValueError/OSError/zip errors)
        raise ModelFileError(path, keras_reason(exc), lead="cannot be loaded: ") from None


def keras_reason(exc: BaseException) -> str:
    """The telling part of a Keras loading error, on one line."""
    text = str(exc)
    if "Lambda" in text and "safe_mode" in text:
        return (
            "it holds a Lambda layer (Python code), which cpc_tf does not run when loading a "
            "model (Keras safe mode); rebuild the model from registered layers"
        )
    unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
    if unknown:
        return (
            f"it names the class {unknown.group(1)!r}, which is not registered here "
            "(a model of another project, or of a newer cpc_tf)"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"Keras says: {clip(first)}"
