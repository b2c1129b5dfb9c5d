"""Small checks shared by everything in cpc_tf that reads user input.

One home each for: showing a user's value in an error message (bounded in length
*and* in the time it takes, so a huge or deeply shared value cannot blow up the
message), the "did you mean" hint, and the number check with its range. Importable
without TensorFlow; raises :class:`~cpc_tf.errors.ConfigError`.
"""

from __future__ import annotations

import difflib
import math
import reprlib
from collections.abc import Iterable
from typing import Any

from cpc_tf.errors import ConfigError

SHOWN_CHARS = 200  # the most characters of a user's value an error message echoes


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to at most ``limit`` characters (``...`` marks a cut).

    Nested containers are abbreviated while the text is made (:mod:`reprlib`), so
    a value of millions of elements costs no more than a small one.
    """
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother = 3, limit, limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 16
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        text = f"<an integer of {value.bit_length()} bits>"  # repr() refuses ints over 4300 digits
    else:
        r.maxlong = limit
        text = r.repr(value)
    return clip(text, limit)


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` cut to at most `limit` characters (``...`` marks a cut), e.g. an error
    message of a library that may quote the user's input.
    """
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest of `known` to `name`, else an empty string."""
    if len(name) > SHOWN_CHARS:  # no hint for an absurd name (and no quadratic matching)
        return ""
    match = difflib.get_close_matches(name, [str(k) for k in known], n=1, cutoff=cutoff)
    return f" (did you mean {match[0]!r}?)" if match else ""


def as_number(value: Any) -> float | None:
    """`value` as a finite float, else None. Text that reads as a number counts (YAML 1.1
    reads ``1e-5``, without a dot, as a string); booleans do not.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # not a number, or an int beyond float range
        return None
    return number if math.isfinite(number) else None


def check_number(
    name: str,
    value: Any,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    min_exclusive: bool = False,
) -> Any:
    """`value` as an int (``integer=True``; a whole float is accepted) or a finite float,
    within ``[minimum, maximum]`` (``(minimum, ...`` with ``min_exclusive``).

    Raises ConfigError naming `name`, e.g. ``train.epochs: expected an integer, got 'abc'``
    or ``train.epochs: 0 is out of range (must be >= 1)``.
    """
    if integer:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {shown(value)}")
    else:
        number = as_number(value)
        if number is None:
            what = "a finite number" if _is_infinite(value) else "a number"
            raise ConfigError(f"{name}: expected {what}, got {shown(value)}")
        value = number
    check_range(name, value, minimum=minimum, maximum=maximum, min_exclusive=min_exclusive)
    return value


def _is_infinite(value: Any) -> bool:
    """True for inf and nan, also as text ('.inf' in YAML is already a float)."""
    try:
        return not math.isfinite(float(value))
    except OverflowError:
        return True
    except (TypeError, ValueError):
        return False


def check_range(
    name: str,
    value: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_exclusive: bool = False,
) -> None:
    """Raise ConfigError when the number `value` lies outside the given bounds."""
    if minimum is not None and (value < minimum or (min_exclusive and value <= minimum)):
        op = ">" if min_exclusive else ">="
        raise ConfigError(f"{name}: {shown(value)} is out of range (must be {op} {minimum})")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: {shown(value)} is out of range (must be <= {maximum})")
