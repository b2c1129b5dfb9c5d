"""What the cache tells people: durations, progress bars, and the text `prepare` prints."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cpc_tf.audio.cache import AudioCache


def printable(text: str) -> str:
    r"""``text`` safe to print on a terminal: control characters (newlines, ANSI escape
    sequences, bidirectional overrides...) and undecodable bytes are written as Python
    escapes (``\n``, ``\x1b``, ``\u202e``), so a file name cannot forge output lines.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif (
            0xDC80 <= ord(ch) <= 0xDCFF
        ):  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``4.5 min`` or ``1.25 h``."""
    if seconds >= 360:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "file") -> Any:
    """A tqdm bar on stderr, shown only when enabled, non-empty and stderr is a terminal.

    ``desc`` names the stage ("decoding audio", "extract: random init"); in a log file (stderr
    not a terminal) no bar is drawn, so no carriage returns or escape codes end up in it.
    """
    from tqdm.auto import tqdm

    show = bool(enabled) and total > 0 and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(
        total=total, desc=desc, unit=unit, disable=not show, leave=False, dynamic_ncols=True
    )


def _names(paths: list[str], shown: int) -> str:
    more = f", ... and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(printable(p) for p in paths[:shown]) + more


def prepare_report(cache: AudioCache, shown: int = 5) -> list[str]:
    """The lines `cpc_tf prepare` prints: what the build did, the cache's summary, the
    skipped files by reason and the warnings by kind (at most ``shown`` names each,
    every name escaped with :func:`printable`).
    """
    up = cache.update
    if up.decoded:
        action = f"decoded {up.decoded} file{'s' * (up.decoded != 1)}"
        if up.reused:
            action += f", reused {up.reused}"
        if up.removed:
            action += f", dropped {up.removed} changed or deleted"
    else:
        action = (
            "up to date, nothing decoded" if not up.removed else f"dropped {up.removed} deleted"
        )
    lines = [
        f"cache: {printable(cache.root)} ({cache.sample_rate} Hz; {action}; {up.seconds:.1f} s)",
        cache.summary(),
    ]
    for reason, paths in cache.skipped_by_reason().items():
        lines.append(f"  skipped, {printable(reason)} ({len(paths)}): {_names(paths, shown)}")
    warnings = cache.warnings()
    if warnings:
        lines.append(
            "warnings: " + ", ".join(f"{what}: {len(paths)}" for what, paths in warnings.items())
        )
        for what, paths in warnings.items():
            lines.append(f"  warning, {what} ({len(paths)}): {_names(paths, shown)}")
    return lines
