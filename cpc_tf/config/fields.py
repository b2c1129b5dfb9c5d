"""The field coercion engine: type- and range-checks values against the schema.

Values from YAML and ``--set`` are checked against each dataclass field's annotation
and its ``min``/``max`` metadata; dotted keys (``model.conv1d.strides``) address fields.
Every mistake raises :class:`~cpc_tf.errors.ConfigError` with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from cpc_tf.checks import check_number, did_you_mean, shown
from cpc_tf.config.schema import Config
from cpc_tf.errors import ConfigError


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any, meta: typing.Mapping[str, Any]) -> Any:
    """Check `value` against the annotation `tp` and the range in `meta`; ints are
    accepted where floats are, and a single number where a list of numbers is.
    """
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{key}: {shown(value)} is not one of {', '.join(map(repr, choices))}"
                f"{did_you_mean(str(value), map(str, choices))}"
            )
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if (
            isinstance(value, (int, float, str))
            and not isinstance(value, bool)
            and item_tp is not str
        ):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {shown(value)}")
        return [_coerce(f"{key}[{i}]", v, item_tp, meta) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {shown(value)}")
    if tp in (int, float):
        return check_number(
            key,
            value,
            integer=tp is int,
            minimum=meta.get("min"),
            maximum=meta.get("max"),
            min_exclusive=bool(meta.get("min_exclusive")),
        )
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {shown(value)}")
    return value


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of a config class, e.g. ``model.conv1d.strides``."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = prefix + f.name
        if _is_dataclass_type(tp):
            keys.extend(all_keys(tp, name + "."))
        else:
            keys.append(name)
    return keys


def unknown_key(key: str) -> ConfigError:
    """The error for a key that is not in the schema, with the nearest key or section."""
    keys = all_keys()
    sections = sorted({k.rsplit(".", 1)[0] for k in keys if "." in k})
    return ConfigError(f"unknown config key {shown(key)}{did_you_mean(key, keys + sections)}")


def check_known(key: str) -> None:
    """Raise the unknown-key error unless `key` names a single setting."""
    if key not in all_keys():
        raise unknown_key(key)


def _field(cls: type, name: Any, key: str) -> tuple[Any, typing.Mapping[str, Any]]:
    """(annotation, metadata) of field `name` of dataclass `cls`; `key` names it in errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(name, str) or name not in fields:
        raise unknown_key(key)
    return typing.get_type_hints(cls)[name], fields[name].metadata


def apply_mapping(obj: Any, mapping: Any, prefix: str = "") -> None:
    """Set the fields of dataclass `obj` from a nested mapping, checking each value."""
    if not isinstance(mapping, dict):
        raise ConfigError(
            f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {shown(mapping)}"
        )
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        tp, meta = _field(type(obj), k, key)
        if _is_dataclass_type(tp):
            apply_mapping(getattr(obj, k), v, key + ".")
        else:
            setattr(obj, k, _coerce(key, v, tp, meta))


def check_value(key: str, value: Any) -> Any:
    """Type-check and range-check one value for a dotted key (no cross-field checks)."""
    cls: Any = Config
    *sections, name = key.split(".")
    for part in sections:
        cls, _ = _field(cls, part, key)
        if not _is_dataclass_type(cls):
            raise unknown_key(key)
    tp, meta = _field(cls, name, key)
    if _is_dataclass_type(tp):
        raise ConfigError(f"{key} is a section, not a single setting")
    return _coerce(key, value, tp, meta)


def key_type(key: str) -> Any:
    """The annotation of a known dotted config key."""
    tp: Any = Config
    for part in key.split("."):
        tp, _ = _field(tp, part, key)
    return tp
