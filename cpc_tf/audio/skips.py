"""Why an audio file is left out of the cache: the short reasons and the error that carries one.

Every per-file failure of finding or decoding becomes :class:`AudioFileError` with a
short ``reason`` (one of the ``REASON_*`` constants) and a longer ``detail``; callers
turn it into a :class:`SkippedFile`.
"""

from __future__ import annotations

from dataclasses import dataclass

REASON_CORRUPT = "corrupt"
REASON_EMPTY = "empty"
REASON_NOT_AUDIO = "not audio"
REASON_UNSUPPORTED = "unsupported codec"
REASON_NONFINITE = "NaN/Inf samples"
REASON_UNREADABLE = "unreadable"
REASON_TOO_SHORT = "too short"
REASON_BAD_RATE = "bad sample rate"


@dataclass(frozen=True)
class SkippedFile:
    """A file that was left out of the cache, with a short reason and a longer detail."""

    path: str
    reason: str
    detail: str = ""


class AudioFileError(Exception):
    """One file could not be used; ``reason`` is a short category, ``detail`` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
