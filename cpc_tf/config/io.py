"""Config input and output: YAML files, ``--set a.b=c`` overrides, presets.

Defaults come from :mod:`cpc_tf.config.schema`, then a YAML file, then ``--set``
overrides (parsed as YAML scalars and type-checked against the dataclass fields),
then :func:`~cpc_tf.config.validate.validate`.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

import yaml

from cpc_tf.config.fields import _apply_mapping, _unknown_key, all_keys
from cpc_tf.config.schema import Config
from cpc_tf.config.validate import validate
from cpc_tf.errors import ConfigError


def _migrate(mapping: dict[str, Any]) -> dict[str, Any]:
    """Rename keys of configs written by earlier versions (run folders keep working).

    ``model.frame.batch_norm: true|false`` became ``model.frame.norm: batch|none``.
    """
    frame = mapping.get("model", {}).get("frame") if isinstance(mapping.get("model"), dict) else None
    if isinstance(frame, dict) and "batch_norm" in frame and "norm" not in frame:
        frame = dict(frame)
        frame["norm"] = "batch" if frame.pop("batch_norm") is True else "none"
        mapping = {**mapping, "model": {**mapping["model"], "frame": frame}}
    return mapping


def from_dict(mapping: dict[str, Any] | None) -> Config:
    """Build a validated config from a nested mapping of overrides on the defaults."""
    cfg = Config()
    _apply_mapping(cfg, _migrate(mapping or {}), "")
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """The full config as plain nested dicts and lists (for YAML)."""
    return dataclasses.asdict(cfg)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:  # carries a line number
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}:{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value``; the value is parsed as a YAML scalar or flow list."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set train.epochs=5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    value = _parse_yaml(raw, f"--set {key}") if raw.strip() else ""
    return key, value


def nest_key(key: str, value: Any) -> dict[str, Any]:
    """``("a.b", v)`` → ``{"a": {"b": v}}``."""
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def merge_dicts(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Merge nested mapping `extra` into `base` in place (`extra` wins); returns `base`."""
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge_dicts(base[k], v)
        else:
            base[k] = v
    return base


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; missing, unreadable or malformed files raise ConfigError."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a folder, not a YAML file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    data = _parse_yaml(text, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then ``--set`` overrides, then validation."""
    mapping: dict[str, Any] = read_yaml(path) if path else {}
    if "sweep" in mapping:
        raise ConfigError(f"{path} is a sweep file (it has a 'sweep:' section); run it with "
                          "`cpc_tf tune --config ...`, or pass its base config here")
    for text in overrides:
        key, value = parse_override(text)
        if key not in all_keys():
            raise _unknown_key(key)
        merge_dicts(mapping, nest_key(key, value))
    return from_dict(mapping)


def dump_config(cfg: Config) -> str:
    """The full resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def replace_keys(cfg: Config, values: dict[str, Any]) -> Config:
    """A new validated config with dotted keys replaced."""
    mapping = to_dict(cfg)
    for k, v in values.items():
        if k not in all_keys():
            raise _unknown_key(k)
        merge_dicts(mapping, nest_key(k, v))
    return from_dict(mapping)



PRESET_DIR = Path(__file__).resolve().parents[2] / "configs"  # the preset YAML files


def resolve_config_path(name: str | None) -> str | None:
    """A config path as given, or a preset name such as ``cpc_conv1d_gru`` from configs/."""
    if not name:
        return None
    if os.path.exists(name):
        return name
    for candidate in (PRESET_DIR / name, PRESET_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return str(candidate)
    presets = sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) if PRESET_DIR.is_dir() else []
    hint = f" (presets: {', '.join(presets)})" if presets else ""
    raise ConfigError(f"config file not found: {name}{hint}")
