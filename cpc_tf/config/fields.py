"""The field coercion engine: type- and range-checks values against the schema.

Values from YAML and ``--set`` are checked against each dataclass field's annotation
and its ``min``/``max`` metadata; dotted keys (``model.conv1d.strides``) address fields.
Every mistake raises :class:`~cpc_tf.errors.ConfigError` with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, Union

from cpc_tf.config.schema import Config
from cpc_tf.errors import ConfigError


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(key, value, a)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, choices))}{extra}")
        return value
    if origin in (list, tuple):
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and item_tp is not str:
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _check_range(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    values = value if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if lo is not None and (v < lo or (meta.get("min_exclusive") and v <= lo)):
            op = ">" if meta.get("min_exclusive") else ">="
            raise ConfigError(f"{key}: {v!r} is out of range (must be {op} {lo})")
        if hi is not None and v > hi:
            raise ConfigError(f"{key}: {v!r} is out of range (must be <= {hi})")


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of a config class, e.g. ``model.conv1d.strides``."""
    keys = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = prefix + f.name
        if _is_dataclass_type(tp):
            keys.extend(all_keys(tp, name + "."))
        else:
            keys.append(name)
    return keys


def _unknown_key(key: str) -> ConfigError:
    keys = all_keys()
    sections = sorted({k.rsplit(".", 1)[0] for k in keys if "." in k})
    match = difflib.get_close_matches(key, keys + sections, n=1, cutoff=0.6)
    hint = f"; did you mean {match[0]!r}?" if match else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def _apply_mapping(obj: Any, mapping: Any, prefix: str) -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {mapping!r}")
    hints = _hints(type(obj))
    names = {f.name: f for f in dataclasses.fields(obj)}
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if not isinstance(k, str) or k not in names:
            raise _unknown_key(str(key))
        tp = hints[k]
        if _is_dataclass_type(tp):
            _apply_mapping(getattr(obj, k), v, key + ".")
        else:
            value = _coerce(key, v, tp)
            _check_range(key, value, names[k].metadata)
            setattr(obj, k, value)



def check_value(key: str, value: Any) -> Any:
    """Type-check and range-check one value for a dotted key (no cross-field checks)."""
    cls: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            raise _unknown_key(key)
        tp = _hints(cls)[part]
        if i < len(parts) - 1:
            if not _is_dataclass_type(tp):
                raise _unknown_key(key)
            cls = tp
            continue
        if _is_dataclass_type(tp):
            raise ConfigError(f"{key} is a section, not a single setting")
        value = _coerce(key, value, tp)
        _check_range(key, value, fields[part].metadata)
        return value
    raise _unknown_key(key)


def get_key(cfg: Config, key: str) -> Any:
    """Read a dotted key."""
    obj: Any = cfg
    for p in key.split("."):
        if not hasattr(obj, p):
            raise _unknown_key(key)
        obj = getattr(obj, p)
    return obj

