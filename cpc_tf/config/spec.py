"""How a config field is declared: its default, its valid range and its help text."""

from __future__ import annotations

import functools
from dataclasses import field
from typing import Any


def _f(
    default: Any,
    *,
    min: float | None = None,
    max: float | None = None,  # noqa: A002
    help: str = "",
    min_exclusive: bool = False,
    **kw: Any,
) -> Any:  # noqa: A002
    """A dataclass field with a validated range and a help text."""
    meta = {"min": min, "max": max, "help": help, "min_exclusive": min_exclusive}
    if isinstance(default, (list, dict)):
        # each instance gets its own (shallow) copy
        return field(default_factory=functools.partial(type(default), default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)
