"""Finding the model behind what :func:`cpc_tf.load` is given.

Three kinds of source are accepted:

* a **run folder** written by ``cpc_tf train`` (it holds ``config.yaml``): its
  ``model.keras``, else its newest checkpoint;
* a **.keras file** saved by cpc_tf (``RUN/model.keras``): the config travels inside it;
* a folder written by ``cpc_tf export`` (it holds :data:`EXPORT_MARKER`, which names the
  model file inside the folder).

Anything else raises :class:`~cpc_tf.errors.InputError` (a ``ValueError``) that says
what was expected and what is missing.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cpc_tf.config import Config
from cpc_tf.errors import CpcTfError, InputError

#: File at the top of an exported folder that names the model file inside it.
EXPORT_MARKER = "cpc_tf_export.json"
_RUN_CONFIG = "config.yaml"
_EXPECTED = (
    "a run folder (with config.yaml), a cpc_tf .keras file or a folder written by `cpc_tf export`"
)


def load_model_and_config(source: str | os.PathLike[str]) -> tuple[Any, Config, str]:
    """``(model, config, description)`` for a run folder, a .keras file or an exported folder.

    Raises:
        InputError: when `source` is none of these, or its model cannot be read.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(source)))
    if not os.path.exists(path):
        raise InputError(f"{path} does not exist; expected {_EXPECTED}")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, _RUN_CONFIG)):
            return _load_run(path)
        if os.path.isfile(os.path.join(path, EXPORT_MARKER)):
            return load_keras_file(exported_model_path(path))
        raise InputError(
            f"{path} is not a cpc_tf run folder (no {_RUN_CONFIG}) nor an exported model "
            f"(no {EXPORT_MARKER}); expected {_EXPECTED}"
        )
    if path.endswith(".keras"):
        return load_keras_file(path)
    raise InputError(f"{path} is a file but not a .keras model; expected {_EXPECTED}")


def exported_model_path(folder: str) -> str:
    """The model file named by an exported folder's marker."""
    marker = os.path.join(folder, EXPORT_MARKER)
    try:
        with open(marker, encoding="utf-8") as fh:
            rel = json.load(fh)["model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{marker} is unreadable or names no model ({exc})") from None
    path = os.path.normpath(os.path.join(folder, str(rel)))
    if not os.path.isfile(path):
        raise InputError(f"{folder}: the model file {rel} named by {EXPORT_MARKER} is missing")
    return path


def _load_run(path: str) -> tuple[Any, Config, str]:
    from cpc_tf.training import RunFolder, load_run_model

    try:
        cfg = RunFolder(path).load_config()
        model = load_run_model(path)
    except CpcTfError as exc:
        raise InputError(f"cannot load the run {path}: {exc}") from None
    return model, cfg, path


def load_keras_file(path: str) -> tuple[Any, Config, str]:
    """A cpc_tf model and its config from a .keras file; InputError for anything else."""
    from cpc_tf.models.base import ContrastiveModel
    from cpc_tf.models.saving import ModelFileError
    from cpc_tf.models.saving import load_keras_file as load_keras

    try:
        model = load_keras(path, compile=False)
    except ModelFileError as exc:
        raise InputError(f"{path} is not a loadable cpc_tf model: {exc.reason}") from None
    if not isinstance(model, ContrastiveModel):
        hint = (
            " (an encoder alone: give the run's model.keras)"
            if getattr(model, "name", "") == "encoder"
            else ""
        )
        raise InputError(
            f"{path} holds a {type(model).__name__} named {getattr(model, 'name', '?')!r}, "
            f"not a cpc_tf model (CPC, SimCLR or a supervised run){hint}"
        )
    return model, model.cfg, path
