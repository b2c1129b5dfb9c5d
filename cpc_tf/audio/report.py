"""What the cache tells people: durations, progress bars, and the text `prepare` prints."""

from __future__ import annotations

import sys
from typing import Any


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``4.5 min`` or ``1.25 h``."""
    if seconds >= 360:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr, shown only when enabled, non-empty and stderr is a terminal."""
    from tqdm.auto import tqdm

    show = bool(enabled) and total > 0 and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="file", disable=not show, leave=False, dynamic_ncols=True)
