"""The sweep file of `cpc_tf tune`: its schema, parsed and validated before any trial.

Importable without TensorFlow or Keras Tuner (``kt`` is only named in annotations).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cpc_tf.checks import as_number, check_number, did_you_mean, shown
from cpc_tf.config import (
    Config,
    all_keys,
    check_value,
    from_dict,
    merge_dicts,
    parse_override,
    read_yaml,
    replace_keys,
    resolve_config_path,
    set_keys,
    to_dict,
)
from cpc_tf.config.fields import key_type
from cpc_tf.errors import ConfigError
from cpc_tf.evaluation.objective import PROBE_OBJECTIVE

if TYPE_CHECKING:
    import keras_tuner as kt

TUNERS = ("random", "bayesian", "hyperband")
SWEEP_FIELDS = (
    "tuner",
    "max_trials",
    "objective",
    "direction",
    "space",
    "executions_per_trial",
    "hyperband_max_epochs",
    "max_consecutive_failures",
)
_SCALARS = (bool, int, float, str)
_FORMS = "{choice: [...]}, {int: [lo, hi]} or {float: [lo, hi]}"


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
                return self.decode(hp.Choice(self.key, [json.dumps(v) for v in self.values or []]))
            return hp.Choice(self.key, list(self.values or []))
        sampling = "log" if self.log else "linear"
        assert self.low is not None and self.high is not None  # a range parameter has both ends
        if self.kind == "int":
            step = int(self.step) if self.step else None
            return hp.Int(self.key, int(self.low), int(self.high), step=step, sampling=sampling)
        return hp.Float(
            self.key, float(self.low), float(self.high), step=self.step, sampling=sampling
        )

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
        return json.loads(
            json.dumps(
                {
                    "base": to_dict(self.base),
                    "space": [dataclasses.asdict(p) for p in self.space],
                    "tuner": self.tuner,
                    "objective": self.objective,
                    "direction": self.direction,
                    "executions_per_trial": self.executions_per_trial,
                    "hyperband_max_epochs": self.hyperband_max_epochs,
                    "labels": self.labels,
                }
            )
        )


def _parse_param(key: str, spec: Any) -> ParamSpec:
    where = f"sweep.space.{key}"
    if key not in all_keys():
        raise ConfigError(
            f"{where}: {shown(key)} is not a config key{did_you_mean(key, all_keys())}"
        )
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected {_FORMS}, got {shown(spec)}")
    kinds = [k for k in ("choice", "int", "float") if k in spec]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of choice, int or float")
    kind = kinds[0]
    allowed = {kind} if kind == "choice" else {kind, "log", "step"}
    extra = set(map(str, spec)) - allowed
    if extra:
        raise ConfigError(
            f"{where}: unknown field(s) {shown(', '.join(sorted(extra)))} "
            f"(allowed with {kind}: {', '.join(sorted(allowed))})"
        )
    if kind == "choice":
        return _parse_choice(where, key, spec["choice"])
    return _parse_range(where, key, kind, spec)


def _parse_choice(where: str, key: str, values: Any) -> ParamSpec:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: choice needs a non-empty list of values")
    checked = [check_value(key, v) for v in values]
    texts = [json.dumps(v) for v in checked]
    if len(set(texts)) != len(texts):
        raise ConfigError(f"{where}: choice lists a value twice: {shown(values)}")
    return ParamSpec(key, "choice", values=checked)


def _parse_range(where: str, key: str, kind: str, spec: dict[str, Any]) -> ParamSpec:
    tp = key_type(key)
    accepted = {"int", "float"} if tp is float else {"int"} if tp is int else set()
    if kind not in accepted:
        what = "an integer setting" if accepted == {"int"} else "not a numeric setting"
        use = "{int: [lo, hi]} or {choice: [...]}" if accepted else "{choice: [...]}"
        raise ConfigError(f"{where}: {key} is {what}; use {use}")
    bounds = spec[kind]
    numbers = (
        [as_number(b) for b in bounds] if isinstance(bounds, list) and len(bounds) == 2 else []
    )
    if len(numbers) != 2 or None in numbers:
        raise ConfigError(f"{where}: {kind} needs [low, high] (two numbers), got {shown(bounds)}")
    low, high = float(numbers[0]), float(numbers[1])  # type: ignore[arg-type]
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"{where}: int bounds must be whole numbers, got {shown(bounds)}")
    if not low < high:
        raise ConfigError(
            f"{where}: empty or inverted range [{bounds[0]}, {bounds[1]}] (low must be < high)"
        )
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {shown(log)}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {bounds[0]}")
    step = _parse_step(where, kind, spec.get("step"), log, high - low)
    for b in (low, high):  # the ends must themselves be valid values of the key
        check_value(key, int(b) if kind == "int" else b)
    return ParamSpec(key, kind, low=low, high=high, step=step, log=log)


def _parse_step(where: str, kind: str, raw: Any, log: bool, width: float) -> float | None:
    if raw is None:
        return None
    step = as_number(raw)
    if step is None or step <= 0:
        raise ConfigError(f"{where}: step must be a positive number, got {shown(raw)}")
    if log and step <= 1:
        raise ConfigError(
            f"{where}: with log: true, step is a factor (e.g. 2 for 128, 256, 512) "
            f"and must be > 1, got {shown(raw)}"
        )
    if kind == "int" and not step.is_integer():
        raise ConfigError(f"{where}: an int step must be a whole number, got {shown(raw)}")
    if not log and step > width:
        raise ConfigError(f"{where}: step {shown(raw)} is larger than the range (width {width:g})")
    return step


def _check_objective(
    objective: str, base: Config, space: list[ParamSpec], labels: str | None
) -> None:
    """One line for an objective the trials can never report (before any trial)."""
    if objective == PROBE_OBJECTIVE:
        if not labels:
            raise ConfigError(
                f"sweep.objective: {PROBE_OBJECTIVE} needs labels: pass --labels "
                "folder | regex:PATTERN | csv:PATH"
            )
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
    raise ConfigError(
        f"sweep.objective: {shown(objective)} is not a metric of this model; "
        f"use one of {', '.join(options)}"
    )


def _base_config(path: str, data: dict[str, Any], overrides: list[str]) -> Config:
    """The base of every trial: the file's ``base:`` preset (if any), the file's own
    sections, then ``--set`` overrides; with held-out files for the objective.
    """
    base_name = data.pop("base", None)
    mapping: dict[str, Any] = {}
    if base_name:
        mapping = read_yaml(resolve_config_path(str(base_name)) or str(base_name))
        mapping.pop("sweep", None)
        mapping.pop("base", None)
    merge_dicts(mapping, data)
    base = from_dict(set_keys(mapping, dict(parse_override(text) for text in overrides)))
    if base.data.validation_fraction == 0:
        base = replace_keys(
            base, {"data.validation_fraction": 0.2}
        )  # the objective needs held-out files
    return base


def _objective(sweep: dict[str, Any], base: Config, labels: str | None) -> tuple[str, str]:
    """(objective, direction): probe_acc with labels, else the sweep's or the family's accuracy."""
    if labels:
        return PROBE_OBJECTIVE, "max"
    objective = sweep.get("objective") or (
        "val_cpc_acc" if base.model.family == "cpc" else "val_simclr_acc"
    )
    if not isinstance(objective, str):
        raise ConfigError(f"sweep.objective must be a metric name, got {shown(objective)}")
    direction = sweep.get("direction") or ("min" if "loss" in objective else "max")
    if direction not in ("min", "max"):
        raise ConfigError(f"sweep.direction must be min or max, got {shown(direction)}")
    return objective, direction


def check_tuner(name: Any, where: str = "sweep.tuner") -> str:
    """`name` when it is one of :data:`TUNERS`, else ConfigError."""
    if name not in TUNERS:
        raise ConfigError(
            f"{where}: {shown(name)} is not one of {', '.join(TUNERS)}"
            f"{did_you_mean(str(name), TUNERS)}"
        )
    return name


def load_sweep(path: str, overrides: list[str] | None = None, labels: str | None = None) -> Sweep:
    """Read and validate a sweep file: every mistake is one line, before any trial starts.

    `overrides` are ``key=value`` texts applied to the base config (``--set``); with
    `labels` the objective becomes the linear-probe accuracy ``probe_acc``.
    """
    data = read_yaml(path)
    sweep = data.pop("sweep", None)
    if not isinstance(sweep, dict):
        raise ConfigError(f"{path}: a sweep file needs a 'sweep:' section with a 'space:' mapping")
    base = _base_config(path, data, overrides or [])
    unknown = set(map(str, sweep)) - set(SWEEP_FIELDS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown sweep field(s) {shown(', '.join(sorted(unknown)))} "
            f"(allowed: {', '.join(sorted(SWEEP_FIELDS))})"
        )
    tuner = check_tuner(sweep.get("tuner", "random"))
    space_raw = sweep.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        raise ConfigError(f"{path}: sweep.space must map config keys to ranges or choices")
    space = [_parse_param(str(k), v) for k, v in space_raw.items()]
    objective, direction = _objective(sweep, base, labels)
    _check_objective(objective, base, space, labels)
    counts = {
        name: check_number(f"sweep.{name}", sweep.get(name, default), integer=True, minimum=minimum)
        for name, default, minimum in (
            ("max_trials", 6, 1),
            ("executions_per_trial", 1, 1),
            ("hyperband_max_epochs", 0, 0),
            ("max_consecutive_failures", 5, 1),
        )
    }
    return Sweep(
        base=base,
        space=space,
        tuner=tuner,
        objective=objective,
        direction=direction,
        labels=labels,
        **counts,
    )
