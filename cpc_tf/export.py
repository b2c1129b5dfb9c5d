"""`cpc_tf export`: package a trained model for use outside cpc_tf's own commands.

Formats:

* ``hear`` — a pip-installable folder that implements the HEAR 2021 common API
  (:mod:`cpc_tf.hear`): ``pyproject.toml``, a Python package whose ``__init__.py``
  defines ``load_model``, ``get_scene_embeddings`` and ``get_timestamp_embeddings``,
  the model file copied inside the package, a README and :data:`EXPORT_MARKER` (so
  ``cpc_tf.load(DIR)`` opens the folder too). The package depends on cpc_tf.
* ``savedmodel`` — ``model.export()``'s TensorFlow SavedModel, whose ``serve`` endpoint
  maps a batch of model inputs to the representation (what ``train.export_savedmodel``
  writes into a run folder).

The folder is built in a temporary sibling and then moved into ``--out``. A non-empty
``--out`` is refused unless ``--force``; even then only files of the same names are
replaced, and nothing else in the folder is touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from cpc_tf import __version__, fileio
from cpc_tf.api.loading import EXPORT_MARKER, exported_model_path
from cpc_tf.errors import ConfigError, DataError

FORMATS: tuple[str, ...] = ("hear", "savedmodel")
MODEL_FILE = "model.keras"


@dataclass
class ExportOptions:
    """What `cpc_tf export` needs."""

    source: str
    out: str
    format: str = "hear"
    force: bool = False
    name: str | None = None
    sample_rate: int | None = None


def check_out(out: str, force: bool) -> None:
    """Refuse a file, or a non-empty folder without `force` (ConfigError, exit 2)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} is a file; give a folder")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise ConfigError(
            f"--out {out} is not empty; pick a new folder or pass --force "
            "(files of the same names are replaced, other files are kept)"
        )


def package_name(name: str | None, config_name: str) -> str:
    """A valid Python package name: `name`, or ``cpc_tf_hear_<config name>``."""
    if name:
        if not name.isidentifier() or name.lower() != name:
            raise ConfigError(
                f"--name {name!r}: a package name is lower-case letters, digits and '_', "
                "not starting with a digit"
            )
        return name
    slug = re.sub(r"[^a-z0-9_]+", "_", config_name.lower()).strip("_") or "model"
    return f"cpc_tf_hear_{slug}"


def _source_model_file(source: str) -> str | None:
    """The .keras file behind `source`, when there is one to copy."""
    path = os.path.abspath(source)
    if os.path.isfile(path):
        return path
    if os.path.isfile(os.path.join(path, EXPORT_MARKER)):
        return exported_model_path(path)
    candidate = os.path.join(path, MODEL_FILE)
    return candidate if os.path.isfile(candidate) else None


def export(options: ExportOptions) -> str:
    """Write the export; returns a one-line description of what was written."""
    from cpc_tf.api import load

    if options.format not in FORMATS:
        raise ConfigError(f"--format {options.format!r}: expected one of {', '.join(FORMATS)}")
    if options.format != "hear" and (options.name or options.sample_rate):
        raise ConfigError("--name and --sample-rate are options of --format hear")
    check_out(options.out, options.force)
    embedder = load(options.source)
    parent = os.path.dirname(os.path.abspath(options.out))
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f"{fileio.TEMP_PREFIX}export-", dir=parent)
    except OSError as exc:
        raise DataError(f"cannot write next to {options.out}: {exc.strerror or exc}") from None
    try:
        if options.format == "hear":
            what = _write_hear(embedder, options, staging)
        else:
            what = _write_savedmodel(embedder, staging)
        _merge(staging, options.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return what


def _merge(staging: str, out: str) -> None:
    """Move every file of `staging` to the same place under `out` (replacing only those)."""
    for folder, _, files in os.walk(staging):
        rel = os.path.relpath(folder, staging)
        target = os.path.normpath(os.path.join(out, rel))
        if os.path.exists(target) and not os.path.isdir(target):
            raise DataError(f"cannot export into {out}: {target} is a file where a folder belongs")
        os.makedirs(target, exist_ok=True)
        for name in files:
            dest = os.path.join(target, name)
            if os.path.isdir(dest):
                raise DataError(
                    f"cannot export into {out}: {dest} is a folder where a file belongs"
                )
            os.replace(os.path.join(folder, name), dest)


def _write_savedmodel(embedder: object, staging: str) -> str:
    from cpc_tf.training import export_savedmodel

    model = embedder.model  # type: ignore[attr-defined]
    export_savedmodel(model, os.path.join(staging, "saved_model"))
    inner = os.path.join(staging, "saved_model")
    for name in os.listdir(inner):  # the SavedModel is the --out folder itself
        os.replace(os.path.join(inner, name), os.path.join(staging, name))
    os.rmdir(inner)
    shape = list(model.example_input(1).shape[1:])
    return (
        "a TensorFlow SavedModel; its `serve` endpoint maps "
        f"float32 [batch, {', '.join(map(str, shape))}] to the representation"
    )


def _write_hear(embedder: Any, options: ExportOptions, staging: str) -> str:
    from cpc_tf.hear import HearModel

    cfg = embedder.config  # type: ignore[attr-defined]
    pkg = package_name(options.name, cfg.name)
    hear = HearModel(embedder, sample_rate=options.sample_rate)  # checks the rate; probes the sizes
    os.makedirs(os.path.join(staging, pkg))
    model_path = os.path.join(staging, pkg, MODEL_FILE)
    source_file = _source_model_file(options.source)
    if source_file:
        shutil.copyfile(source_file, model_path)
    else:  # a run with checkpoints only: save the loaded model
        embedder.model.save(model_path)  # type: ignore[attr-defined]
    facts = {
        "pkg": pkg,
        "dist": pkg.replace("_", "-"),
        "name": cfg.name,
        "version": __version__,
        "rate": hear.sample_rate,
        "hop": hear.hop_seconds,
        "source": os.path.abspath(options.source),
        "scene": hear.scene_embedding_size,
        "stamp": hear.timestamp_embedding_size,
        "model_rate": embedder.sample_rate,
    }  # type: ignore[attr-defined]
    files = {
        "pyproject.toml": _PYPROJECT,
        os.path.join(pkg, "__init__.py"): _INIT,
        "README.md": _README,
    }
    for rel, template in files.items():
        with open(os.path.join(staging, rel), "w", encoding="utf-8") as fh:
            fh.write(template.format(**facts))
    with open(os.path.join(staging, EXPORT_MARKER), "w", encoding="utf-8") as fh:
        json.dump(
            {
                "format": "hear",
                "package": pkg,
                "model": f"{pkg}/{MODEL_FILE}",
                "cpc_tf_version": __version__,
                "source": facts["source"],
            },
            fh,
            indent=2,
        )
    return (
        f"HEAR 2021 module {pkg!r} (pip install {options.out}; sample_rate {hear.sample_rate}, "
        f"scene {hear.scene_embedding_size}, timestamp {hear.timestamp_embedding_size} "
        f"every {1000 * hear.hop_seconds:g} ms or less)"
    )


_PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "{version}"
description = "HEAR 2021 module for the cpc_tf model {name}"
requires-python = ">=3.10"
dependencies = ["cpc_tf>={version}"]

[tool.setuptools]
packages = ["{pkg}"]

[tool.setuptools.package-data]
{pkg} = ["model.keras"]
"""

_INIT = '''"""HEAR 2021 module for the cpc_tf model {name!r} (written by cpc_tf {version} export).

Source: {source}. Audio is [n_sounds, n_samples] float in [-1, 1] at {rate} Hz
(resampled inside to the model's {model_rate} Hz). Scene embeddings: {scene} floats per
sound; timestamp embeddings: {stamp} floats per frame, every {hop} s or less, with
timestamps in milliseconds at frame centres.
"""

import os

from cpc_tf import hear as _hear

MODEL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.keras")
SAMPLE_RATE = {rate}
HOP_SECONDS = {hop}


def load_model(model_file_path=""):
    """The model (this package's own model.keras unless another path is given)."""
    return _hear.load_model(model_file_path or MODEL_FILE, sample_rate=SAMPLE_RATE, \
hop_seconds=HOP_SECONDS)


def get_scene_embeddings(audio, model):
    """float32 tf.Tensor [n_sounds, model.scene_embedding_size]."""
    return _hear.get_scene_embeddings(audio, model)


def get_timestamp_embeddings(audio, model):
    """(float32 [n_sounds, frames, model.timestamp_embedding_size], \
float32 [n_sounds, frames] ms)."""
    return _hear.get_timestamp_embeddings(audio, model)
'''

_README = """# {pkg}

HEAR 2021 module for the cpc_tf model `{name}`, exported by cpc_tf {version}.

    pip install .        # needs cpc_tf installed (it is a dependency)

```python
import {pkg} as module
model = module.load_model()
scene = module.get_scene_embeddings(audio, model)           # audio: [n, samples] at {rate} Hz
frames, times_ms = module.get_timestamp_embeddings(audio, model)
```
"""
