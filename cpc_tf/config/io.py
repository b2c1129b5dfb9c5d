"""Config input and output: YAML files, ``--set a.b=c`` overrides, presets.

Defaults come from :mod:`cpc_tf.config.schema`, then a YAML file, then ``--set``
overrides (parsed as YAML scalars and type-checked against the dataclass fields),
then :func:`~cpc_tf.config.validate.validate`.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import typing
from pathlib import Path
from typing import Any

import yaml

from cpc_tf.checks import clip, shown
from cpc_tf.config.fields import apply_mapping, check_known
from cpc_tf.config.schema import Config
from cpc_tf.config.validate import validate
from cpc_tf.errors import ConfigError


def _migrate(mapping: dict[str, Any]) -> dict[str, Any]:
    """Rename keys of configs written by earlier versions (run folders keep working).

    ``model.frame.batch_norm: true|false`` became ``model.frame.norm: batch|none``.
    """
    frame = (
        mapping.get("model", {}).get("frame") if isinstance(mapping.get("model"), dict) else None
    )
    if isinstance(frame, dict) and "batch_norm" in frame and "norm" not in frame:
        frame = dict(frame)
        frame["norm"] = "batch" if frame.pop("batch_norm") is True else "none"
        mapping = {**mapping, "model": {**mapping["model"], "frame": frame}}
    return mapping


def from_dict(mapping: dict[str, Any] | None) -> Config:
    """Build a validated config from a nested mapping of overrides on the defaults."""
    cfg = Config()
    apply_mapping(cfg, _migrate(mapping or {}))
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """The full config as plain nested dicts and lists (for YAML)."""
    return dataclasses.asdict(cfg)


MAX_YAML_NODES = 100_000  # values in one YAML document, aliases expanded; a full config has ~300


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """Nodes of the document under `node` with every alias expanded (stops past the limit)."""
    if id(node) in memo:
        return memo[id(node)]
    if id(node) in active:
        raise ConfigError("a YAML alias refers to the node that contains it")
    active.add(id(node))
    children = (
        node.value
        if isinstance(node, yaml.SequenceNode)
        else [c for pair in node.value for c in pair]
        if isinstance(node, yaml.MappingNode)
        else []
    )
    size = 1
    for child in children:
        size += _expanded_size(child, memo, active)
        if size > MAX_YAML_NODES:
            break
    active.discard(id(node))
    memo[id(node)] = size
    return size


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely; every mistake is one :class:`ConfigError` naming `source`.

    Aliases are allowed, but a document whose aliases expand to more than
    ``MAX_YAML_NODES`` values (a "billion laughs" file) is refused before any Python
    object is built, as is an alias that contains itself.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = _expanded_size(node, {}, set())
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if size > MAX_YAML_NODES:
            raise ConfigError(
                f"{source}: more than {MAX_YAML_NODES:,} YAML values once its aliases are "
                "expanded; a config holds a few hundred"
            )
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:  # carries a line number
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{source}:{where}: invalid YAML: {clip(str(exc.problem or exc))}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {clip(str(exc))}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{source}: invalid YAML: {clip(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value``; the value is parsed as a YAML scalar or flow list."""
    if "=" not in text:
        raise ConfigError(f"--set {shown(text)}: expected key=value, e.g. --set train.epochs=5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {shown(text)}: empty key")
    value = parse_yaml(raw, f"--set {key}") if raw.strip() else ""
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
    data = parse_yaml(text, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: typing.Sequence[str] = ()
) -> Config:
    """Defaults, then the YAML file (if any), then ``--set`` overrides, then validation."""
    mapping: dict[str, Any] = read_yaml(path) if path else {}
    if "sweep" in mapping:
        raise ConfigError(
            f"{path} is a sweep file (it has a 'sweep:' section); run it with "
            "`cpc_tf tune --config ...`, or pass its base config here"
        )
    return from_dict(set_keys(mapping, dict(parse_override(text) for text in overrides)))


def dump_config(cfg: Config) -> str:
    """The full resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def set_keys(mapping: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``{"train.epochs": 3}``) in a nested mapping, in place; unknown
    keys are refused with the nearest known one. Returns `mapping`.
    """
    for key, value in values.items():
        check_known(key)
        merge_dicts(mapping, nest_key(key, value))
    return mapping


def replace_keys(cfg: Config, values: dict[str, Any]) -> Config:
    """A new validated config with dotted keys replaced."""
    return from_dict(set_keys(to_dict(cfg), values))


def preset_dir() -> Path:
    """The preset YAML files shipped inside the package (``cpc_tf/presets``; the
    ``configs/`` folder of the repository holds the same files for reading).
    """
    return Path(str(importlib.resources.files("cpc_tf") / "presets"))


def resolve_config_path(name: str | None) -> str | None:
    """A config path as given, or a preset name such as ``cpc_conv1d_gru`` (or
    ``cpc_conv1d_gru.yaml``) of the presets shipped with cpc_tf.
    """
    if not name:
        return None
    if os.path.exists(name):
        return name
    presets = preset_dir()
    for candidate in (presets / name, presets / f"{name}.yaml"):
        if candidate.is_file():
            return str(candidate)
    names = sorted(p.stem for p in presets.glob("*.yaml")) if presets.is_dir() else []
    hint = f" (presets: {', '.join(names)})" if names else ""
    raise ConfigError(f"config file not found: {clip(name)}{hint}")
