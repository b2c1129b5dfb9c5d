"""Reading, checking and atomically writing ``embeddings.npz`` files.

The file holds one row per audio crop (Bajorath et al. 2021, §2.3: ``num_em_samples_per_data``
crops per file, each embedded on its own). Its layout is a contract shared with
``cpc_tf extract`` (see docs/design.md, "embeddings.npz"):

========== =============== ==============================================
array      shape           meaning
========== =============== ==============================================
embeddings float32 [n, d]  one row per crop
paths      str [n]         file path relative to the audio folder
labels     str [n]         '' when unlabelled; multi-label tags joined by ';'
crop_start float32 [n]     crop start in seconds
clip_index int [n]         which file the row came from
run        scalar str      run folder the embeddings were made with
model      scalar str      model name
========== =============== ==============================================

Optional arrays named when loading (by default only ``config``, the YAML text of the
run) are kept in :attr:`EmbeddingSet.extras`; others (frame-level features, skip
lists) are not read.

Documented degradations of :func:`load_embeddings` (each one adds a counted line to
:attr:`EmbeddingSet.warnings` instead of failing):

* rows whose embedding holds NaN or Inf are dropped; a file in which every row is
  non-finite is an error;
* rows with an empty label are dropped (they cannot be probed); a file in which every
  label is empty is an error that says to extract with ``--labels``;
* ``run`` and ``model`` may be absent (they are metadata); they default to ''.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from cpc_tf import fileio
from cpc_tf.errors import DataError

#: Per-row arrays every embeddings file must hold.
ROW_KEYS: tuple[str, ...] = ("embeddings", "paths", "labels", "crop_start", "clip_index")
#: Scalar metadata named by the contract (optional when reading).
META_KEYS: tuple[str, ...] = ("run", "model")
#: Separator of multi-label tags inside one label string.
TAG_SEPARATOR = ";"


@dataclass
class EmbeddingSet:
    """A validated embeddings file: finite float32 rows that all carry a label."""

    embeddings: np.ndarray
    paths: np.ndarray
    labels: np.ndarray
    crop_start: np.ndarray
    clip_index: np.ndarray
    run: str = ""
    model: str = ""
    source: str = ""
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        """Embedding size d."""
        return int(self.embeddings.shape[1])

    @property
    def n_files(self) -> int:
        """Number of distinct files (paths)."""
        return int(np.unique(self.paths).size)

    @property
    def is_multilabel(self) -> bool:
        """True when any label joins several tags with ';'."""
        return has_tags(self.labels)

    def subset(self, rows: np.ndarray) -> EmbeddingSet:
        """The same set restricted to `rows` (a boolean mask or integer indices)."""
        return EmbeddingSet(
            self.embeddings[rows],
            self.paths[rows],
            self.labels[rows],
            self.crop_start[rows],
            self.clip_index[rows],
            self.run,
            self.model,
            self.source,
            dict(self.extras),
            list(self.warnings),
        )

    def config_text(self) -> str:
        """The run's YAML config when the file carries one (extra array ``config``), else ''."""
        value = self.extras.get("config")
        if value is None:
            return ""
        return _scalar_text(value)


# --------------------------------------------------------------------- writing
def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write a file through ``write(fh)`` (a binary handle) atomically; see cpc_tf.fileio."""

    def save(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())

    fileio.atomic_write(save, os.fspath(path))


atomic_write_text = fileio.atomic_write_text


def save_embeddings(path: str | os.PathLike[str], *, compress: bool = False, **arrays: Any) -> None:
    """Atomically write an embeddings file (temporary file, then ``os.replace``).

    Lists of strings are stored as numpy unicode arrays so that the file loads
    without pickle. ``path`` is used as given (numpy's habit of appending ``.npz``
    does not apply, because the data is written through a file handle).
    """
    clean: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            arr = arr.astype(str)
        clean[key] = arr
    saver = np.savez_compressed if compress else np.savez
    # temporaries left by an extract that was killed while writing
    fileio.remove_stale_temps_of(os.fspath(path))
    atomic_write(path, lambda fh: saver(fh, **clean))  # type: ignore[arg-type]


# --------------------------------------------------------------------- reading
def _scalar_text(value: np.ndarray) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return str(arr.item())
    if arr.size == 1:
        return str(arr.reshape(-1)[0])
    return "\n".join(str(v) for v in arr.reshape(-1))


def _read_npz(path: str, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays named in `wanted` that the archive holds (others, e.g. frames, stay on disk)."""
    if not os.path.exists(path):
        raise DataError(f"embeddings file not found: {path}")
    if os.path.isdir(path):
        raise DataError(f"embeddings path is a folder, not an .npz file: {path}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        _check_declared_sizes(path, wanted)
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files if k in wanted}
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(
                f"{path}: holds Python objects (pickled); store strings as numpy "
                "str arrays, e.g. with cpc_tf.evaluation.embeddings.save_embeddings"
            ) from None
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def _memory_bytes() -> int:
    """Physical memory of the machine (a generous bound on one array), or 2**40 when unknown."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return 2**40


def _check_declared_sizes(path: str, wanted: tuple[str, ...]) -> None:
    """Refuse an archive whose array headers declare more data than it holds or memory could take.

    Each ``.npy`` member's header is read (a few hundred bytes) before numpy allocates the
    array, so a forged header that claims hundreds of GiB fails in one line instead of
    exhausting memory.
    """
    limit = _memory_bytes()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if key not in wanted:
                continue
            with archive.open(info) as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(fh)
                except (ValueError, OSError, EOFError) as exc:
                    raise DataError(f"{path}: array {key!r} has a broken header ({exc})") from None
            declared = int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
            if declared > info.file_size or declared > limit:
                raise DataError(
                    f"{path}: array {key!r} declares shape {shape} of {dtype} "
                    f"({declared / 2**30:.1f} GiB) but the archive holds "
                    f"{info.file_size / 2**20:.1f} MiB for it; the file is damaged or forged"
                )


def validate_arrays(arrays: Mapping[str, np.ndarray], source: str = "<arrays>") -> EmbeddingSet:
    """Check the contract on in-memory arrays and return a clean :class:`EmbeddingSet`.

    Raises :class:`~cpc_tf.errors.DataError` with one line for a missing key, a shape
    mismatch, non-numeric embeddings, no finite rows or no labels at all.
    """
    missing = [k for k in ROW_KEYS if k not in arrays]
    if missing:
        raise DataError(
            f"{source}: missing array(s) {', '.join(repr(k) for k in missing)} "
            f"(an embeddings file needs {', '.join(ROW_KEYS)})"
        )
    emb = np.asarray(arrays["embeddings"])
    if emb.ndim != 2:
        raise DataError(f"{source}: 'embeddings' must be 2-D [n, d], got shape {emb.shape}")
    if emb.shape[0] == 0 or emb.shape[1] == 0:
        raise DataError(f"{source}: 'embeddings' is empty (shape {emb.shape})")
    if not np.issubdtype(emb.dtype, np.number) or np.iscomplexobj(emb):
        raise DataError(f"{source}: 'embeddings' must hold real numbers, got dtype {emb.dtype}")
    n = emb.shape[0]
    rows: dict[str, np.ndarray] = {}
    for key in ROW_KEYS[1:]:
        arr = np.asarray(arrays[key])
        if arr.ndim != 1 or arr.shape[0] != n:
            raise DataError(
                f"{source}: {key!r} has shape {arr.shape}, expected [{n}] "
                "(one entry per embedding row)"
            )
        rows[key] = arr
    paths = rows["paths"].astype(str)
    labels = np.char.strip(rows["labels"].astype(str))
    try:
        crop_start = rows["crop_start"].astype(np.float32)
        clip_index = rows["clip_index"].astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: 'crop_start' / 'clip_index' must be numeric ({exc})") from None
    if np.any(paths == ""):
        raise DataError(f"{source}: {int(np.sum(paths == ''))} row(s) have an empty path")

    warnings: list[str] = []
    emb = emb.astype(np.float32, copy=False)
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        bad = int((~finite).sum())
        if bad == n:
            raise DataError(
                f"{source}: every embedding row contains NaN or Inf "
                "(the model diverged or extraction failed)"
            )
        warnings.append(
            f"{source}: dropped {bad} of {n} rows whose embeddings contain NaN/Inf "
            f"(from {np.unique(paths[~finite]).size} file(s))"
        )
    labelled = labels != ""
    if not labelled.any():
        raise DataError(
            f"{source}: every label is empty; re-run extract with "
            "--labels folder|regex:PATTERN|csv:PATH to evaluate"
        )
    if not labelled.all():
        warnings.append(
            f"{source}: dropped {int((~labelled).sum())} unlabelled rows "
            f"({np.unique(paths[~labelled]).size} file(s))"
        )
    keep = finite & labelled
    if not keep.any():
        raise DataError(f"{source}: no row is both labelled and finite")

    paths, labels = paths[keep], labels[keep]
    _check_one_label_per_file(paths, labels, source)
    extras = {
        k: np.asarray(v) for k, v in arrays.items() if k not in ROW_KEYS and k not in META_KEYS
    }
    meta = {k: _scalar_text(arrays[k]) if k in arrays else "" for k in META_KEYS}
    return EmbeddingSet(
        emb[keep],
        paths,
        labels,
        crop_start[keep],
        clip_index[keep],
        meta["run"],
        meta["model"],
        source,
        extras,
        warnings,
    )


def _check_one_label_per_file(paths: np.ndarray, labels: np.ndarray, source: str) -> None:
    first: dict[str, str] = {}
    for p, lab in zip(paths.tolist(), labels.tolist()):
        if first.setdefault(p, lab) != lab:
            raise DataError(
                f"{source}: crops of {p!r} carry different labels ({first[p]!r}, {lab!r}); "
                "labels must be per file"
            )


def load_embeddings(
    path: str | os.PathLike[str], extras: tuple[str, ...] = ("config",)
) -> EmbeddingSet:
    """Load and validate an embeddings file (see the module docstring for the rules).

    Only the contract's arrays and the named `extras` are read; large optional arrays
    such as frame-level features are left on disk.
    """
    path = os.fspath(path)
    return validate_arrays(_read_npz(path, ROW_KEYS + META_KEYS + tuple(extras)), source=path)


def has_tags(labels: np.ndarray | list[str]) -> bool:
    """True when any label joins several tags with ';' (the data is multi-label)."""
    return any(TAG_SEPARATOR in lab for lab in np.asarray(labels).astype(str).tolist())


def split_tags(label: str) -> list[str]:
    """The tags of one label string ('rock;guitar' -> ['rock', 'guitar'])."""
    return [t.strip() for t in label.split(TAG_SEPARATOR) if t.strip()]


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders digit runs by value: 'class2' < 'class10', '2' < '10'."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", text)
        if part != ""
    )
