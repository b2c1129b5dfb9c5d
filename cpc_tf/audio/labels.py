r"""Labels for evaluation: from the folder layout, a regex on file names, or a CSV/TSV file.

A label source is chosen by a short spec string:

``folder``
    the first-level sub-folder of a file (``dog/bark1.wav`` -> ``dog``); files at the
    top level of the audio folder get no label ('').
``regex:PATTERN``
    ``re.search`` on the file name (not the folders); the first capture group, or the
    whole match when the pattern has no group. ``regex:^(\d)_`` gives the digit of a
    Free Spoken Digit Dataset file, ``regex:^\d_([a-z]+)_`` its speaker.
``csv:PATH`` (or ``csv:PATH#COLUMN``, which ``--label-column COLUMN`` writes)
    a CSV or TSV table; paths are relative to the audio folder (absolute paths inside it
    work too). With a header row, the columns are chosen by name: the path column is
    ``path`` (or ``file``, ``filename``, ...), the label column is ``COLUMN`` when given,
    else ``label``/``labels``/``tags``/``tag``, else the only other column; any further
    column is ignored, and a table with several candidates and no choice is refused.
    Without a header, every row is ``path,label``. A cell may hold several tags
    separated by ';' (multi-label: the sorted tags joined with ';'). A file listed twice
    with the same label is fine; with different labels it is an error naming the file.

Unlabelled files get ''. Every mistake in a spec raises :class:`ConfigError`, and so does
a regex or CSV that labels no file of the folder; :meth:`LabelSource.labels_for` counts
CSV rows that name no file, and files without a row, in :attr:`LabelSource.warnings`.
"""

from __future__ import annotations

import csv
import os
import posixpath
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable

from cpc_tf.checks import shown as _shown
from cpc_tf.errors import ConfigError

__all__ = [
    "LabelSource",
    "FolderLabels",
    "RegexLabels",
    "CsvLabels",
    "parse_label_source",
    "normalise_path",
    "with_label_column",
]

_HEADER_NAMES = (
    "path",
    "file",
    "filename",
    "file_name",
    "filepath",
    "file_path",
    "name",
    "fname",
    "audio",
    "audio_path",
    "clip",
    "track",
    "id",
)
_LABEL_NAMES = ("label", "labels", "tags", "tag")


def normalise_path(path: str) -> str:
    """A relative path in the form the cache uses: '/'-separated, no './', no '..' folding."""
    p = path.strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    p = posixpath.normpath(p) if p else p
    return "" if p == "." else p


class LabelSource(ABC):
    """Maps a file's path (relative to the audio folder) to its label string."""

    spec: str = ""

    @abstractmethod
    def label_for(self, rel_path: str) -> str:
        """The label of one file, '' when it has none."""

    def labels_for(self, rel_paths: Iterable[str]) -> list[str]:
        """Labels of many files, in order; refuses a source that labels none of them.

        Raises:
            ConfigError: a regex or CSV source that gives no file of a non-empty list a label
                (the folder source may leave a flat folder unlabelled).
        """
        paths = list(rel_paths)
        labels = [self.label_for(p) for p in paths]
        if paths and self.must_label and not any(labels):
            raise ConfigError(
                f"labels: {self.spec} gives no label to any of the {len(set(paths))} files "
                f"(first: {_shown(paths[0])})"
            )
        return labels

    #: Whether labelling no file at all is a mistake of the spec rather than an unlabelled folder.
    must_label: bool = False

    @property
    def warnings(self) -> list[str]:
        """Counted problems found by the last :meth:`labels_for` (empty when none)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class FolderLabels(LabelSource):
    """The first-level sub-folder name."""

    spec = "folder"

    def label_for(self, rel_path: str) -> str:
        parts = normalise_path(rel_path).split("/")
        return parts[0] if len(parts) > 1 else ""


class RegexLabels(LabelSource):
    """The first capture group (or the whole match) of a regex searched on the file name."""

    must_label = True

    def __init__(self, pattern: str) -> None:
        if not pattern:
            raise ConfigError("labels: 'regex:' needs a pattern, e.g. regex:^(\\d)_")
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"labels: bad regex {pattern!r}: {exc}") from None
        self.spec = f"regex:{pattern}"

    def label_for(self, rel_path: str) -> str:
        name = posixpath.basename(normalise_path(rel_path))
        m = self.regex.search(name)
        if m is None:
            return ""
        if self.regex.groups:
            return m.group(1) or ""
        return m.group(0)


class CsvLabels(LabelSource):
    """Labels listed in a CSV or TSV file (multi-label tags allowed)."""

    must_label = True

    def __init__(
        self,
        csv_path: str,
        audio_dir: str | os.PathLike[str] | None = None,
        column: str | None = None,
    ) -> None:
        self.spec = f"csv:{csv_path}" + (f"#{column}" if column else "")
        self.path = _find_csv(csv_path, audio_dir)
        self.audio_dir = os.path.abspath(os.fspath(audio_dir)) if audio_dir is not None else None
        self.column = column
        self._labels: dict[str, frozenset[str]] = {}
        self._warnings: list[str] = []
        self._read()
        names: dict[str, list[str]] = {}
        for p in self._labels:
            names.setdefault(posixpath.basename(p), []).append(p)
        # a bare file name in the CSV still matches a file in a sub-folder when unambiguous
        self._by_name = {n: ps[0] for n, ps in names.items() if len(ps) == 1}

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as fh:
                text = fh.read()
        except UnicodeDecodeError:
            raise ConfigError(f"labels: {self.path} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"labels: cannot read {self.path}: {exc.strerror or exc}") from None
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        delimiter = "\t" if "\t" in first else ","
        rows = [
            r
            for r in csv.reader(text.splitlines(), delimiter=delimiter)
            if any(c.strip() for c in r)
        ]
        header = rows[0] if rows and self._is_header(rows[0]) else None
        path_col, label_col = self._columns(header, rows)
        rows = rows[1:] if header else rows
        if not rows:
            raise ConfigError(f"labels: {self.path} lists no files")
        for line, row in enumerate(rows, start=2 if header else 1):
            path = self._relative(row[path_col]) if path_col < len(row) else ""
            if not path:
                continue
            cell = row[label_col] if label_col < len(row) else ""
            tags = frozenset(t.strip() for t in cell.split(";") if t.strip())
            known = self._labels.get(path)
            if known is not None and known != tags:
                raise ConfigError(
                    f"labels: {self.path} gives {_shown(path)} two different labels "
                    f"({_shown(';'.join(sorted(known)))} and {_shown(';'.join(sorted(tags)))}, "
                    f"row {line}); keep one row per file, with tags joined by ';'"
                )
            self._labels[path] = tags

    def _columns(self, header: list[str] | None, rows: list[list[str]]) -> tuple[int, int]:
        """(path column, label column), chosen by the header's names."""
        if header is None:
            if self.column:
                raise ConfigError(
                    f"labels: {self.path} has no header row, so it has no column named "
                    f"{_shown(self.column)}; add a header (e.g. path,label)"
                )
            widths = sorted({len(r) for r in rows})
            if widths and widths[-1] > 2:
                raise ConfigError(
                    f"labels: {self.path} has rows of {widths[-1]} columns and no header; "
                    "add a header row naming the path and label columns (several tags of one "
                    "file go in one cell, separated by ';')"
                )
            return 0, 1
        names = [h.strip().lower() for h in header]
        path_col = next((names.index(n) for n in _HEADER_NAMES if n in names), 0)
        others = [i for i in range(len(names)) if i != path_col]
        if self.column:
            if self.column.strip().lower() not in names:
                raise ConfigError(
                    f"labels: {self.path} has no column {_shown(self.column)}; its columns are "
                    + ", ".join(_shown(h) for h in header)
                )
            return path_col, names.index(self.column.strip().lower())
        label_col = next((names.index(n) for n in _LABEL_NAMES if n in names), None)
        if label_col is not None:
            return path_col, label_col
        if len(others) == 1:
            return path_col, others[0]
        raise ConfigError(
            f"labels: {self.path} has columns "
            + ", ".join(_shown(h) for h in header)
            + "; name the label column with --label-column (or csv:PATH#COLUMN)"
        )

    def _is_header(self, row: list[str]) -> bool:
        first = row[0].strip().lower()
        if first in _HEADER_NAMES:
            return True
        if self.audio_dir is not None and "." not in posixpath.basename(first):
            return not os.path.exists(os.path.join(self.audio_dir, row[0].strip()))
        return False

    def _relative(self, cell: str) -> str:
        p = cell.strip()
        if self.audio_dir is not None and os.path.isabs(p):
            try:
                p = os.path.relpath(p, self.audio_dir)
            except ValueError:
                pass
        return normalise_path(p)

    def _row_for(self, rel_path: str) -> str | None:
        p = normalise_path(rel_path)
        if p in self._labels:
            return p
        alt = self._by_name.get(posixpath.basename(p))
        return alt if alt is not None and "/" not in alt else None

    def label_for(self, rel_path: str) -> str:
        row = self._row_for(rel_path)
        return ";".join(sorted(self._labels[row])) if row is not None else ""

    def labels_for(self, rel_paths: Iterable[str]) -> list[str]:
        paths = list(rel_paths)
        labels = super().labels_for(paths)
        used = {self._row_for(p) for p in paths}
        unused = [r for r in self._labels if r not in used]
        unlisted = sorted({p for p, lab in zip(paths, labels) if not lab})
        self._warnings = []
        if unused:
            self._warnings.append(
                f"{len(unused)} of the {len(self._labels)} rows of {self.path} name no file "
                f"of the audio folder (first: {_shown(unused[0])})"
            )
        if unlisted:
            self._warnings.append(
                f"{len(unlisted)} of the {len(set(paths))} files have no label in "
                f"{self.path} (first: {_shown(unlisted[0])})"
            )
        return labels

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)


def _find_csv(csv_path: str, audio_dir: str | os.PathLike[str] | None) -> str:
    if not csv_path:
        raise ConfigError("labels: 'csv:' needs a file, e.g. csv:labels.csv")
    candidates = [os.path.expanduser(csv_path)]
    if audio_dir is not None and not os.path.isabs(candidates[0]):
        candidates.append(os.path.join(os.fspath(audio_dir), candidates[0]))
    for c in candidates:
        if os.path.isfile(c):
            return os.path.abspath(c)
    if os.path.isdir(candidates[0]):
        raise ConfigError(f"labels: {csv_path} is a folder, not a CSV file")
    raise ConfigError(f"labels: CSV file not found: {csv_path}")


def parse_label_source(spec: str, audio_dir: str | os.PathLike[str] | None = None) -> LabelSource:
    """Turn ``folder`` / ``regex:PATTERN`` / ``csv:PATH`` into a :class:`LabelSource`.

    A relative CSV path is looked up from the working directory first, then inside
    ``audio_dir``.
    """
    text = (spec or "").lstrip()
    if text.rstrip() == "folder":
        return FolderLabels()
    kind, sep, arg = text.partition(":")
    if sep and kind == "regex":
        return RegexLabels(arg)
    if sep and kind in ("csv", "tsv"):
        path, column = _split_column(arg.strip(), audio_dir)
        return CsvLabels(path, audio_dir, column)
    raise ConfigError(
        f"labels: unknown label source {spec!r}; use folder, regex:PATTERN or csv:PATH"
    )


def _split_column(arg: str, audio_dir: str | os.PathLike[str] | None) -> tuple[str, str | None]:
    """``PATH#COLUMN`` -> (PATH, COLUMN); a path that exists as given keeps its '#'."""
    path, sep, column = arg.rpartition("#")
    if (
        not sep
        or not column
        or os.path.isfile(os.path.expanduser(arg))
        or (audio_dir is not None and os.path.isfile(os.path.join(os.fspath(audio_dir), arg)))
    ):
        return arg, None
    return path, column


def with_label_column(spec: str | None, column: str | None) -> str | None:
    """Fold ``--label-column COLUMN`` into a ``csv:PATH`` spec (``csv:PATH#COLUMN``).

    Raises:
        ConfigError: a column given without a CSV label source.
    """
    if not column:
        return spec
    if not spec or not spec.lstrip().startswith(("csv:", "tsv:")):
        raise ConfigError("--label-column names a column of a CSV: use it with --labels csv:PATH")
    return f"{spec.strip()}#{column}"
