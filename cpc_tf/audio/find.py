"""Finding audio files in a folder.

:func:`find_audio_files` walks a folder recursively, follows symbolic links without
getting caught in link loops, and returns every file with an audio extension together
with its size and modification time. No TensorFlow, no decoder libraries.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass, field

from cpc_tf.audio.skips import REASON_UNREADABLE, SkippedFile
from cpc_tf.errors import DataError

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au"}
)
"""File name endings taken as audio (compared case-insensitively)."""


@dataclass(frozen=True)
class FoundFile:
    """An audio file found by :func:`find_audio_files`."""

    rel: str  # path relative to the audio folder, '/'-separated
    path: str  # absolute path as walked (links are not resolved)
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    """What a folder walk found: audio files, audio entries that could not be read, and
    how many other (non-audio) files were seen.
    """

    files: list[FoundFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    other_files: int = 0


# ------------------------------------------------------------------- finding files
def check_audio_folder(audio_dir: str | os.PathLike[str]) -> str:
    """The absolute path of an existing, readable, non-empty folder; DataError otherwise."""
    folder = os.path.abspath(os.path.expanduser(os.fspath(audio_dir)))
    if not os.path.exists(folder):
        raise DataError(f"audio folder not found: {folder}")
    if not os.path.isdir(folder):
        raise DataError(f"not a folder: {folder} (give the folder that holds the audio files)")
    try:
        entries = os.listdir(folder)
    except OSError as exc:
        raise DataError(f"cannot read audio folder {folder}: {exc.strerror or exc}") from None
    if not entries:
        raise DataError(f"audio folder is empty: {folder}")
    return folder


def is_audio_name(name: str) -> bool:
    """True when the file name ends in one of :data:`AUDIO_EXTENSIONS` (any case)."""
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def find_audio_files(audio_dir: str | os.PathLike[str]) -> ScanResult:
    """Walk ``audio_dir`` recursively (following links, each real folder once).

    Files are returned sorted by relative path. Audio-named entries that cannot be
    stat'ed (a broken link, a link loop, no permission) are listed as skipped
    'unreadable'; unreadable sub-folders likewise, with a trailing '/'.
    """
    top = os.path.abspath(os.fspath(audio_dir))
    result = ScanResult()
    seen: set[tuple[int, int]] = set()
    try:
        st = os.stat(top)
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        return result
    stack: list[tuple[str, str]] = [(top, "")]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if rel_folder:
                result.skipped.append(
                    SkippedFile(
                        rel_folder + "/",
                        REASON_UNREADABLE,
                        f"cannot list folder: {exc.strerror or exc}",
                    )
                )
            continue
        subfolders: list[tuple[str, str]] = []
        for entry in entries:
            rel = posixpath.join(rel_folder, entry.name) if rel_folder else entry.name
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                if is_audio_name(entry.name):
                    why = (
                        "link loop"
                        if getattr(exc, "errno", None) == 40
                        else ("broken link" if entry.is_symlink() else (exc.strerror or str(exc)))
                    )
                    result.skipped.append(SkippedFile(rel, REASON_UNREADABLE, why))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue  # a link back to a folder already walked (a loop or a duplicate)
                seen.add(key)
                subfolders.append((entry.path, rel))
            elif stat.S_ISREG(st.st_mode):
                if is_audio_name(entry.name):
                    result.files.append(
                        FoundFile(rel, entry.path, int(st.st_size), int(st.st_mtime_ns))
                    )
                else:
                    result.other_files += 1
        stack.extend(reversed(subfolders))
    result.files.sort(key=lambda f: f.rel)
    result.skipped.sort(key=lambda s: s.path)
    return result
