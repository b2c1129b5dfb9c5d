"""The sweep file of `cpc_tf tune`: its schema, parsed and validated before any trial."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cpc_tf.config import Config, all_keys, check_value, from_dict, read_yaml, replace_keys, to_dict
from cpc_tf.errors import ConfigError

if TYPE_CHECKING:
    import keras_tuner as kt

TUNERS = ("random", "bayesian", "hyperband")
SWEEP_FIELDS = ("tuner", "max_trials", "objective", "direction", "space", "executions_per_trial",
                "hyperband_max_epochs", "max_consecutive_failures")
PROBE_OBJECTIVE = "probe_acc"
_SCALARS = (bool, int, float, str)


# ------------------------------------------------------------------ the sweep file
@dataclass
class ParamSpec:
    """One searched config key: a choice, or an int/float range (linear or log).

    Keras Tuner's ``Choice`` only holds scalars of one type, so a choice among lists
    (``model.projection_dims: {choice: [[256, 64], [512, 128]]}``) is searched over the
    values' text form and decoded back by :meth:`decode`.
    """

    key: str
    kind: str  # "choice" | "int" | "float"
    values: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @property
    def encoded(self) -> bool:
        """True when the choice values are searched as text (lists, mixed types)."""
        if self.kind != "choice" or not self.values:
            return False
        kinds = {type(v) for v in self.values}
        return len(kinds) > 1 or not isinstance(self.values[0], _SCALARS)

    def sample(self, hp: kt.HyperParameters) -> Any:
        """Register this parameter with Keras Tuner and return the config value it chose."""
        if self.kind == "choice":
            if self.encoded:
                return self.decode(hp.Choice(self.key, [json.dumps(v) for v in self.values]))
            return hp.Choice(self.key, list(self.values or []))
        sampling = "log" if self.log else "linear"
        if self.kind == "int":
            step = int(self.step) if self.step else None
            return hp.Int(self.key, int(self.low), int(self.high), step=step, sampling=sampling)
        return hp.Float(self.key, float(self.low), float(self.high), step=self.step, sampling=sampling)

    def decode(self, value: Any) -> Any:
        """The config value of a value Keras Tuner recorded for this parameter."""
        if value is None:
            return None
        if self.encoded and isinstance(value, str):
            return json.loads(value)
        return value

    def describe(self) -> str:
        """A short text of the searched range (for results.md)."""
        if self.kind == "choice":
            return f"choice {self.values}"
        extra = (" log" if self.log else "") + (f" step {self.step:g}" if self.step else "")
        return f"{self.kind} [{self.low:g}, {self.high:g}]{extra}"


@dataclass
class Sweep:
    """A parsed, validated sweep file."""

    base: Config
    space: list[ParamSpec]
    tuner: str = "random"
    max_trials: int = 6
    objective: str = ""
    direction: str = "max"
    executions_per_trial: int = 1
    hyperband_max_epochs: int = 0
    max_consecutive_failures: int = 5
    labels: str | None = None

    def state(self) -> dict[str, Any]:
        """What defines the search (not its length): compared when a sweep is continued."""
        return json.loads(json.dumps({
            "base": to_dict(self.base), "space": [dataclasses.asdict(p) for p in self.space],
            "tuner": self.tuner, "objective": self.objective, "direction": self.direction,
            "executions_per_trial": self.executions_per_trial,
            "hyperband_max_epochs": self.hyperband_max_epochs, "labels": self.labels,
        }))


def _key_type(key: str) -> Any:
    """The annotation of a dotted config key (the key is known to exist)."""
    cls: Any = Config
    tp: Any = None
    for part in key.split("."):
        tp = typing.get_type_hints(cls)[part]
        cls = tp
    return tp


def _number_kinds(tp: Any) -> set[str]:
    """Which range kinds a key's type accepts: {'int', 'float'}, {'int'} or none."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    kinds: set[str] = set()
    for a in args:
        if a is float:
            kinds |= {"int", "float"}
        elif a is int:
            kinds.add("int")
    return kinds


def _as_number(x: Any) -> float | None:
    """`x` as a finite float (YAML 1.1 reads ``1e-5`` without a dot as text), else None."""
    if isinstance(x, str):
        try:
            x = float(x)
        except ValueError:
            return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return None
    return float(x)


def _parse_param(key: str, spec: Any) -> ParamSpec:
    where = f"sweep.space.{key}"
    keys = all_keys()
    if key not in keys:
        match = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        hint = f"; did you mean {match[0]!r}?" if match else ""
        raise ConfigError(f"{where}: {key!r} is not a config key{hint}")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected {{choice: [...]}}, {{int: [lo, hi]}} or {{float: [lo, hi]}}, "
                          f"got {spec!r}")
    kinds = [k for k in ("choice", "int", "float") if k in spec]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of choice, int or float")
    kind = kinds[0]
    allowed = {kind} if kind == "choice" else {kind, "log", "step"}
    extra = set(spec) - allowed
    if extra:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(extra))} "
                          f"(allowed with {kind}: {', '.join(sorted(allowed))})")
    if kind == "choice":
        values = spec["choice"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: choice needs a non-empty list of values")
        checked = [check_value(key, v) for v in values]
        texts = [json.dumps(v) for v in checked]
        if len(set(texts)) != len(texts):
            raise ConfigError(f"{where}: choice lists a value twice: {values!r}")
        return ParamSpec(key, kind, values=checked)

    accepted = _number_kinds(_key_type(key))
    if kind not in accepted:
        what = "an integer setting" if accepted == {"int"} else "not a numeric setting"
        use = "{int: [lo, hi]} or {choice: [...]}" if accepted else "{choice: [...]}"
        raise ConfigError(f"{where}: {key} is {what}; use {use}")
    bounds = spec[kind]
    numbers = [_as_number(b) for b in bounds] if isinstance(bounds, list) and len(bounds) == 2 else []
    if len(numbers) != 2 or None in numbers:
        raise ConfigError(f"{where}: {kind} needs [low, high] (two numbers), got {bounds!r}")
    low, high = float(numbers[0]), float(numbers[1])  # type: ignore[arg-type]
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"{where}: int bounds must be whole numbers, got {bounds!r}")
    if not low < high:
        raise ConfigError(f"{where}: empty or inverted range [{bounds[0]}, {bounds[1]}] (low must be < high)")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {bounds[0]}")
    raw_step = spec.get("step")
    step = None if raw_step is None else _as_number(raw_step)
    if raw_step is not None:
        if step is None or step <= 0:
            raise ConfigError(f"{where}: step must be a positive number, got {raw_step!r}")
        if log and step <= 1:
            raise ConfigError(f"{where}: with log: true, step is a factor (e.g. 2 for 128, 256, 512) "
                              f"and must be > 1, got {raw_step!r}")
        if kind == "int" and not step.is_integer():
            raise ConfigError(f"{where}: an int step must be a whole number, got {raw_step!r}")
        if not log and step > high - low:
            raise ConfigError(f"{where}: step {raw_step} is larger than the range [{bounds[0]}, {bounds[1]}]")
    for b in (low, high):  # the ends must themselves be valid values of the key
        check_value(key, int(b) if kind == "int" else b)
    return ParamSpec(key, kind, low=low, high=high, step=step, log=log)


def _check_objective(objective: str, base: Config, space: list[ParamSpec], labels: str | None) -> None:
    """One line for an objective the trials can never report (before any trial)."""
    if objective == PROBE_OBJECTIVE:
        if not labels:
            raise ConfigError(f"sweep.objective: {PROBE_OBJECTIVE} needs labels: pass --labels "
                              "folder | regex:PATTERN | csv:PATH")
        return
    families = {base.model.family}
    if any(p.key == "model.family" for p in space):
        families = {"cpc", "simclr"}
    names = {"loss"}
    if "cpc" in families:
        names.add("cpc_acc")
    if "simclr" in families:
        names.add("simclr_acc")
    plain = objective[4:] if objective.startswith("val_") else objective
    if plain in names or ("cpc" in families and re.fullmatch(r"cpc_acc_k[1-9][0-9]*", plain)):
        return
    options = sorted(names | {f"val_{n}" for n in names}) + [PROBE_OBJECTIVE + " (with --labels)"]
    raise ConfigError(f"sweep.objective: {objective!r} is not a metric of this model; "
                      f"use one of {', '.join(options)}")


def _positive_int(sweep: dict[str, Any], name: str, default: int, minimum: int = 1) -> int:
    value = sweep.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"sweep.{name} must be an integer >= {minimum}, got {value!r}")
    return value


def load_sweep(path: str, overrides: list[str] | None = None, labels: str | None = None) -> Sweep:
    """Read and validate a sweep file: every mistake is one line, before any trial starts.

    `overrides` are ``key=value`` texts applied to the base config (``--set``); with
    `labels` the objective becomes the linear-probe accuracy ``probe_acc``.
    """
    from cpc_tf.config import merge_dicts, nest_key, parse_override

    data = read_yaml(path)
    sweep = data.pop("sweep", None)
    if not isinstance(sweep, dict):
        raise ConfigError(f"{path}: a sweep file needs a 'sweep:' section with a 'space:' mapping")
    base_name = data.pop("base", None)
    mapping: dict[str, Any] = {}
    if base_name:
        from cpc_tf.config import resolve_config_path
        mapping = read_yaml(resolve_config_path(str(base_name)))
        mapping.pop("sweep", None)
        mapping.pop("base", None)
    merge_dicts(mapping, data)
    for text in overrides or []:
        key, value = parse_override(text)
        merge_dicts(mapping, nest_key(key, value))
    base = from_dict(mapping)
    if base.data.validation_fraction == 0:
        base = replace_keys(base, {"data.validation_fraction": 0.2})  # the objective needs held-out files
    unknown = set(sweep) - set(SWEEP_FIELDS)
    if unknown:
        raise ConfigError(f"{path}: unknown sweep field(s) {', '.join(sorted(map(str, unknown)))} "
                          f"(allowed: {', '.join(sorted(SWEEP_FIELDS))})")
    tuner = sweep.get("tuner", "random")
    if tuner not in TUNERS:
        raise ConfigError(f"sweep.tuner: {tuner!r} is not one of {', '.join(TUNERS)}")
    space_raw = sweep.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        raise ConfigError(f"{path}: sweep.space must map config keys to ranges or choices")
    space = [_parse_param(str(k), v) for k, v in space_raw.items()]
    if labels:
        objective, direction = PROBE_OBJECTIVE, "max"
    else:
        objective = sweep.get("objective") or ("val_cpc_acc" if base.model.family == "cpc" else "val_simclr_acc")
        if not isinstance(objective, str):
            raise ConfigError(f"sweep.objective must be a metric name, got {objective!r}")
        direction = sweep.get("direction") or ("min" if "loss" in objective else "max")
    _check_objective(objective, base, space, labels)
    if direction not in ("min", "max"):
        raise ConfigError(f"sweep.direction must be min or max, got {direction!r}")
    return Sweep(base=base, space=space, tuner=tuner, max_trials=_positive_int(sweep, "max_trials", 6),
                 objective=objective, direction=direction,
                 executions_per_trial=_positive_int(sweep, "executions_per_trial", 1),
                 hyperband_max_epochs=_positive_int(sweep, "hyperband_max_epochs", 0, minimum=0),
                 max_consecutive_failures=_positive_int(sweep, "max_consecutive_failures", 5),
                 labels=labels)


def config_for(base: Config, values: dict[str, Any]) -> Config:
    """The base config with a trial's sampled values."""
    return replace_keys(base, values)

