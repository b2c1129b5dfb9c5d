"""`cpc_tf tune`: hyperparameter sweeps with Keras Tuner over any config key.

A sweep file is an ordinary config (the base of every trial) plus a ``sweep`` section::

    base: cpc_conv1d_gru              # optional preset (or path) the file overrides
    train: {epochs: 3}
    sweep:
      tuner: random                   # random | bayesian | hyperband
      max_trials: 6
      objective: val_cpc_acc          # default: val_cpc_acc (CPC) / val_simclr_acc (SimCLR)
      space:
        train.learning_rate: {float: [1.0e-5, 1.0e-3], log: true}
        model.autoregressor: {choice: [gru, transformer]}
        model.c_dim: {int: [128, 512], step: 128}

Each trial is a :class:`SweepHyperModel` build (the base config plus the sampled values)
trained by cpc_tf's own engine into ``TUNE_DIR/trials/<id>/`` (a normal run folder),
with Keras Tuner's callbacks driven by that engine. Results are rewritten after every
trial (``results.csv``, ``results.md``, ``best.yaml``), and re-running the same
command continues the sweep: finished trials are not repeated, an interrupted one
resumes from its last completed epoch.

Layout of ``TUNE_DIR``::

    sweep.json            what was searched (refuses to continue a different sweep)
    keras_tuner/          Keras Tuner's own state (oracle, trial records, best-epoch weights)
    trials/<id>/          one cpc_tf run folder per trial (+ trial_time.json)
    results.csv           one row per trial, in trial order
    results.md            the same, best first, plus the best trial's line
    best.yaml             the complete config of the best trial
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import json
import math
import os
import re
import shutil
import time
import types
import typing
from dataclasses import dataclass
from typing import Any

import keras
import keras_tuner as kt
import tensorflow as tf

from cpc_tf.fileio import atomic_write_text
from cpc_tf.config import (Config, all_keys, check_value, dump_config, from_dict, read_yaml,
                           replace_keys, to_dict)
from cpc_tf.errors import ConfigError, DataError, TrainingError
from cpc_tf.training import TrainOptions, compile_model, history_rows, make_strategy, train

TUNERS = ("random", "bayesian", "hyperband")
SWEEP_FIELDS = ("tuner", "max_trials", "objective", "direction", "space", "executions_per_trial",
                "hyperband_max_epochs", "max_consecutive_failures")
PROBE_OBJECTIVE = "probe_acc"
TRIAL_TIME_FILE = "trial_time.json"
STATE_FILE = "sweep.json"
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


# ------------------------------------------------------------------ one trial
def _read_seconds(run_dir: str) -> float:
    try:
        with open(os.path.join(run_dir, TRIAL_TIME_FILE), encoding="utf-8") as fh:
            return float(json.load(fh)["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


class _TrialClock(keras.callbacks.Callback):
    """Writes the trial's seconds so far after every epoch (a killed trial keeps its time)."""

    def __init__(self, run_dir: str, previous: float) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.previous = previous
        self.start = time.time()

    def seconds(self) -> float:
        return self.previous + time.time() - self.start

    def write(self) -> None:
        if os.path.isdir(self.run_dir):
            atomic_write_text(os.path.join(self.run_dir, TRIAL_TIME_FILE), json.dumps({"seconds": self.seconds()}))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.write()


class SweepHyperModel(kt.HyperModel):
    """Keras Tuner HyperModel: ``build(hp)`` makes the model, ``fit`` runs cpc_tf's engine.

    ``fit`` trains into ``TUNE_DIR/trials/<id>/`` (``.../exec_<n>/`` when a trial has
    several executions). A trial interrupted by a kill is resumed from its folder when
    the folder holds the same config; a folder holding another config (left by a trial
    Keras Tuner never recorded) is cleared first.
    """

    def __init__(self, sweep: Sweep, audio_dir: str, tune_dir: str, cache_dir: str | None,
                 strategy: tf.distribute.Strategy, labels: str | None = None, verbose: int = 1) -> None:
        super().__init__(name="cpc_tf_sweep")
        self.sweep = sweep
        self.audio_dir = audio_dir
        self.tune_dir = tune_dir
        self.cache_dir = cache_dir
        self.strategy = strategy
        self.labels = labels
        self.verbose = verbose
        self._trial = ""  # the trial being run, and how many of its executions have run
        self._executions = 0

    def config(self, hp: kt.HyperParameters) -> Config:
        """The config of a trial: the base plus the values in `hp`."""
        values = {p.key: p.sample(hp) for p in self.sweep.space}
        return config_for(self.sweep.base, values)

    def _execution_config(self, hp: kt.HyperParameters) -> Config:
        """The config of the current execution: several executions differ in train.seed."""
        cfg = self.config(hp)
        if self.sweep.executions_per_trial > 1:
            cfg = replace_keys(cfg, {"train.seed": cfg.train.seed + self._executions})
        return cfg

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        cfg = self._execution_config(hp)
        from cpc_tf.models.registry import check_fits
        check_fits(cfg)
        return compile_model(cfg, self.strategy)

    def trial_dir(self, trial_id: str) -> str:
        """The run folder of a trial (its parent when it has several executions)."""
        return os.path.join(self.tune_dir, "trials", str(trial_id))

    def start_trial(self, trial_id: str) -> None:
        """Note the trial about to run (before its first execution is built)."""
        self._trial, self._executions = str(trial_id), 0

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        trial_id = str(kwargs.pop("trial_id", self._trial or "trial"))
        execution = self._executions
        cfg = self._execution_config(hp)
        self._executions += 1  # the next build is the next execution
        if kwargs.get("epochs"):  # Hyperband: train from `initial_epoch` to `epochs`
            todo = int(kwargs["epochs"]) - int(kwargs.get("initial_epoch") or 0)
            cfg = replace_keys(cfg, {"train.epochs": max(1, todo)})
        run_dir = self.trial_dir(trial_id)
        if self.sweep.executions_per_trial > 1:
            run_dir = os.path.join(run_dir, f"exec_{execution}")
        resume = self._prepare_run_dir(run_dir, cfg)
        clock = _TrialClock(run_dir, _read_seconds(run_dir) if resume else 0.0)
        try:
            train(cfg, TrainOptions(run_dir=run_dir, audio_dir=self.audio_dir, resume=resume,
                                    cache_dir=self.cache_dir, verbose=self.verbose),
                  model=model, strategy=self.strategy,
                  extra_callbacks=[*(kwargs.get("callbacks") or []), clock])
            # The whole per-epoch record, also of epochs trained before an interruption.
            history = keras.callbacks.History()
            history.history = {}
            for row in history_rows(run_dir):
                for k, v in row.items():
                    if k != "epoch":
                        history.history.setdefault(k, []).append(v)
            if self.labels:
                acc = probe_accuracy(model, cfg, self.audio_dir, self.labels, self.cache_dir)
                epochs = max(1, len(next(iter(history.history.values()), [])))
                history.history[PROBE_OBJECTIVE] = [acc] * epochs
            if self.sweep.objective not in history.history:
                raise TrainingError(f"the trial reported no {self.sweep.objective}")
            return history
        finally:
            clock.write()

    @staticmethod
    def _prepare_run_dir(run_dir: str, cfg: Config) -> bool:
        """True when `run_dir` holds an interrupted run of this very config (resume it)."""
        config_path = os.path.join(run_dir, "config.yaml")
        if not os.path.isfile(config_path):
            return False
        with open(config_path, encoding="utf-8") as fh:
            if fh.read() == dump_config(cfg):
                return True
        shutil.rmtree(run_dir)  # a stale folder of another config: start afresh
        return False


def probe_accuracy(model: keras.Model, cfg: Config, audio_dir: str, labels: str, cache_dir: str | None) -> float:
    """Linear-probe accuracy of the trial's embeddings on a file-level split (labels needed)."""
    import numpy as np

    from cpc_tf.audio.cache import open_cache_for
    from cpc_tf.audio.labels import parse_label_source
    from cpc_tf.evaluation.probe import train_probe
    from cpc_tf.evaluation.splits import split_by_file
    from cpc_tf.extract import extract_embeddings

    cache = open_cache_for(cfg, audio_dir, cache_dir=cache_dir, progress=False)
    arrays = extract_embeddings(model, cfg, cache, progress=False)
    source = parse_label_source(labels, audio_dir)
    by_id = {c.clip_id: c.path for c in cache.clips}
    paths = np.array([by_id[int(i)] for i in arrays["clip_id"]])
    y = np.array(source.labels_for(paths.tolist()))
    keep = y != ""
    x, y, paths = arrays["embeddings"][keep], y[keep], paths[keep]
    if len(set(y.tolist())) < 2:
        raise DataError(f"--labels {labels}: fewer than two classes among the files")
    train_idx, test_idx = split_by_file(paths, y, test_fraction=cfg.eval.test_fraction, seed=cfg.eval.seed)
    result = train_probe(x[train_idx], y[train_idx], x[test_idx], y[test_idx], cfg.eval,
                         train_files=paths[train_idx])
    return float(result.accuracy)


# ------------------------------------------------------------------ the tuner
def _tuner_class(name: str) -> type:
    base = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization, "hyperband": kt.Hyperband}[name]

    class SweepTuner(base):  # type: ignore[misc, valid-type]
        """Passes the trial id to the HyperModel, rewrites the results after each trial,
        and stops after too many failed trials in a row."""

        def __init__(self, *args: Any, sweep: Sweep, tune_dir: str, **kwargs: Any) -> None:
            self.cpc_tf_sweep = sweep
            self.cpc_tf_dir = tune_dir
            super().__init__(*args, **kwargs)

        def on_search_begin(self) -> None:
            super().on_search_begin()
            self.save()  # so that a kill during the first trial still resumes it

        def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> Any:
            kwargs["trial_id"] = trial.trial_id
            self.hypermodel.start_trial(trial.trial_id)
            return super().run_trial(trial, *args, **kwargs)

        def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
            super().on_trial_end(trial)  # the oracle records (and saves) the trial first
            write_results(self, self.cpc_tf_sweep, self.cpc_tf_dir)
            limit = self.cpc_tf_sweep.max_consecutive_failures
            streak = 0
            for trial_id in reversed(self.oracle.end_order):
                if self.oracle.trials[trial_id].status != "FAILED":
                    break
                streak += 1
            if streak >= limit:
                raise TrainingError(f"the sweep stopped after {streak} failed trials in a row "
                                    f"(sweep.max_consecutive_failures={limit}); last error: "
                                    f"{_last_error_line(self.oracle.trials[self.oracle.end_order[-1]].message)}")

    SweepTuner.__name__ = f"Sweep{base.__name__}"
    return SweepTuner


def make_tuner(sweep: Sweep, hypermodel: SweepHyperModel, tune_dir: str, max_trials: int) -> kt.Tuner:
    """The Keras Tuner tuner of the sweep (resumes from `tune_dir` when it holds one)."""
    objective = kt.Objective(sweep.objective, direction=sweep.direction)
    common = dict(hypermodel=hypermodel, objective=objective, directory=tune_dir, project_name="keras_tuner",
                  overwrite=False, executions_per_trial=sweep.executions_per_trial,
                  distribution_strategy=None, max_consecutive_failed_trials=10**9,  # see on_trial_end
                  sweep=sweep, tune_dir=tune_dir)
    cls = _tuner_class(sweep.tuner)
    try:
        if sweep.tuner == "hyperband":
            return cls(max_epochs=sweep.hyperband_max_epochs or sweep.base.train.epochs, factor=3,
                       seed=sweep.base.train.seed, **common)
        return cls(max_trials=max_trials, seed=sweep.base.train.seed, **common)
    except (ValueError, KeyError, RuntimeError) as exc:  # unreadable Keras Tuner state
        raise DataError(f"cannot continue the sweep in {tune_dir}: its keras_tuner/ state is unreadable "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                        "use a new --out") from None


# ------------------------------------------------------------------ results
def _last_error_line(message: str | None) -> str:
    """The last line of a trial's traceback, without the exception's module path."""
    lines = [ln.strip() for ln in (message or "").strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    match = re.match(r"^[\w.]*(Error|Exception|Interrupt)[\w]*: ", line)
    return line[match.end():] if match else line


def _first_sentence(text: str) -> str:
    head, sep, _ = text.partition(". ")
    return head + "." if sep else text


def _trial_rows(tuner: kt.Tuner, sweep: Sweep, tune_dir: str) -> list[dict[str, Any]]:
    """One row per trial Keras Tuner knows of, in trial order."""
    rows = []
    for trial_id in sorted(tuner.oracle.trials, key=lambda t: (len(t), t)):
        trial = tuner.oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row: dict[str, Any] = {"trial": trial_id, "status": str(trial.status)}
        row.update({p.key: p.decode(values.get(p.key)) for p in sweep.space})
        if sweep.tuner == "hyperband":
            row["epochs"] = values.get("tuner/epochs")
        score = trial.score if trial.status == "COMPLETED" else None
        row[sweep.objective] = None if score is None or not math.isfinite(score) else round(float(score), 6)
        seconds = _read_seconds(os.path.join(tune_dir, "trials", trial_id))
        if not seconds and sweep.executions_per_trial > 1:
            seconds = sum(_read_seconds(os.path.join(tune_dir, "trials", trial_id, f"exec_{i}"))
                          for i in range(sweep.executions_per_trial))
        row["seconds"] = round(seconds, 1) if seconds else None
        row["error"] = _last_error_line(trial.message)[:300] if trial.status == "FAILED" else ""
        rows.append(row)
    return rows


def _best_first(rows: list[dict[str, Any]], sweep: Sweep) -> list[dict[str, Any]]:
    sign = -1 if sweep.direction == "max" else 1
    return sorted(rows, key=lambda r: (r[sweep.objective] is None, sign * (r[sweep.objective] or 0.0)))


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def write_results(tuner: kt.Tuner, sweep: Sweep, tune_dir: str) -> list[dict[str, Any]]:
    """results.csv (trial order), results.md (best first) and best.yaml, written atomically."""
    rows = _trial_rows(tuner, sweep, tune_dir)
    if not rows:
        return rows
    columns = ["trial", "status", *[p.key for p in sweep.space]]
    if sweep.tuner == "hyperband":
        columns.append("epochs")
    columns += [sweep.objective, "seconds", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: ("" if r[c] is None else json.dumps(r[c]) if isinstance(r[c], list) else r[c])
                      for c in columns} for r in rows)
    atomic_write_text(os.path.join(tune_dir, "results.csv"), buf.getvalue())

    ranked = _best_first(rows, sweep)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("COMPLETED", "FAILED")}
    md = [f"# Sweep results: {sweep.base.name}", "",
          f"{sweep.tuner} search, objective `{sweep.objective}` ({sweep.direction}imise); "
          f"{len(rows)} trial(s): {counts['COMPLETED']} completed, {counts['FAILED']} failed.", "",
          "Searched: " + "; ".join(f"`{p.key}` {p.describe()}" for p in sweep.space), "",
          "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(_fmt(_first_sentence(r[c]) if c == "error" else r[c]) for c in columns) + " |"
           for r in ranked]
    best = next((r for r in ranked if r[sweep.objective] is not None), None)
    if best:
        cfg = config_for(sweep.base, {p.key: best[p.key] for p in sweep.space})
        cfg = replace_keys(cfg, {"name": f"{sweep.base.name}_best"})
        atomic_write_text(os.path.join(tune_dir, "best.yaml"),
                          f"# best trial {best['trial']} of the sweep in {tune_dir}: "
                          f"{sweep.objective} = {best[sweep.objective]}\n" + dump_config(cfg))
        md += ["", f"Best: trial {best['trial']}, {sweep.objective} = {_fmt(best[sweep.objective])}; "
               f"its complete config is `best.yaml` "
               f"(`cpc_tf train --config {os.path.join(tune_dir, 'best.yaml')} ...`)."]
    atomic_write_text(os.path.join(tune_dir, "results.md"), "\n".join(md) + "\n")
    return rows


# ------------------------------------------------------------------ the command
def _check_same_sweep(sweep: Sweep, tune_dir: str) -> None:
    """Refuse to continue a sweep folder with a different sweep (Keras Tuner would mix them)."""
    path = os.path.join(tune_dir, STATE_FILE)
    new = sweep.state()
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as fh:
                old = json.load(fh)
        except (OSError, ValueError):
            old = None
        if old is not None and old != new:
            changed = _changed_keys(old, new)
            raise ConfigError(f"{tune_dir} holds a different sweep (changed: {', '.join(changed[:4])}"
                              f"{' ...' if len(changed) > 4 else ''}); rerun the original command "
                              "to continue it, or give a new --out")
    elif os.path.isdir(os.path.join(tune_dir, "keras_tuner")):
        raise ConfigError(f"{tune_dir} holds Keras Tuner state but no {STATE_FILE}; give a new --out")
    atomic_write_text(path, json.dumps(new, indent=1, sort_keys=True))


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                out.append(name)
            else:
                out += _changed_keys(old[k], new[k], name)
        return out
    return [] if old == new else [prefix or "sweep"]


def run_sweep(sweep_path: str, audio_dir: str, tune_dir: str, overrides: list[str] | None = None,
              max_trials: int | None = None, tuner_name: str | None = None, strategy_name: str | None = None,
              labels: str | None = None, cache_dir: str | None = None, verbose: int = 1) -> list[dict[str, Any]]:
    """`cpc_tf tune`: validate the sweep, run (or continue) it, write the results.

    Every mistake in the sweep, the labels or the audio folder is reported before the
    first trial. Returns the result rows; raises :class:`TrainingError` when no trial
    completed.
    """
    sweep = load_sweep(sweep_path, overrides, labels=labels)
    if tuner_name:
        if tuner_name not in TUNERS:
            raise ConfigError(f"--tuner: {tuner_name!r} is not one of {', '.join(TUNERS)}")
        sweep.tuner = tuner_name
    if max_trials is not None and max_trials < 1:
        raise ConfigError(f"--max-trials must be >= 1, got {max_trials}")
    trials = max_trials or sweep.max_trials
    label_source = None
    if labels:
        from cpc_tf.audio.labels import parse_label_source
        label_source = parse_label_source(labels, audio_dir)
    from cpc_tf.audio.files import check_audio_folder
    check_audio_folder(audio_dir)
    strategy = make_strategy(strategy_name or sweep.base.train.strategy)
    _check_same_sweep(sweep, tune_dir)  # creates tune_dir

    # Decode the audio once, before the first trial (its errors are not trial failures).
    from cpc_tf.audio.cache import open_cache_for
    cache = open_cache_for(sweep.base, audio_dir, cache_dir=cache_dir, progress=verbose > 0)
    if label_source is not None:
        classes = {label_source.label_for(c.path) for c in cache.clips} - {""}
        if len(classes) < 2:
            raise DataError(f"--labels {labels}: the files of {audio_dir} have {len(classes)} class(es); "
                            "the probe objective needs at least two")

    hypermodel = SweepHyperModel(sweep, audio_dir, tune_dir, cache_dir, strategy, labels=labels, verbose=verbose)
    tuner = make_tuner(sweep, hypermodel, tune_dir, trials)
    tuner.search()
    rows = write_results(tuner, sweep, tune_dir)
    if rows and not any(r["status"] == "COMPLETED" for r in rows):
        last = next((r["error"] for r in reversed(rows) if r["error"]), "")
        raise TrainingError(f"no trial of the sweep completed ({len(rows)} failed); see "
                            f"{os.path.join(tune_dir, 'results.md')}; last error: {last}")
    return rows
