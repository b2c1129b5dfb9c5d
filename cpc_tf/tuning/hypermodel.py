"""One trial of a sweep: the Keras Tuner HyperModel and the tuner that drives it."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import keras
import keras_tuner as kt
import tensorflow as tf

from cpc_tf.config import Config, dump_config, replace_keys
from cpc_tf.errors import DataError, TrainingError
from cpc_tf.evaluation.objective import probe_accuracy, probe_chance
from cpc_tf.fileio import atomic_write_text
from cpc_tf.training import TrainOptions, compile_model, history_rows, train
from cpc_tf.tuning.results import (
    TRIAL_TIME_FILE,
    _last_error_line,
    _read_seconds,
    is_contrastive_accuracy,
    write_chance,
    write_results,
)
from cpc_tf.tuning.sweep import PROBE_OBJECTIVE, Sweep


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
            atomic_write_text(
                os.path.join(self.run_dir, TRIAL_TIME_FILE), json.dumps({"seconds": self.seconds()})
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.write()


class SweepHyperModel(kt.HyperModel):
    """Keras Tuner HyperModel: ``build(hp)`` makes the model, ``fit`` runs cpc_tf's engine.

    ``fit`` trains into ``TUNE_DIR/trials/<id>/`` (``.../exec_<n>/`` when a trial has
    several executions). A trial interrupted by a kill is resumed from its folder when
    the folder holds the same config; a folder holding another config (left by a trial
    Keras Tuner never recorded) is cleared first.
    """

    def __init__(
        self,
        sweep: Sweep,
        audio_dir: str,
        tune_dir: str,
        cache_dir: str | None,
        strategy: tf.distribute.Strategy,
        labels: str | None = None,
        verbose: int = 1,
    ) -> None:
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
        return replace_keys(self.sweep.base, values)

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
            train(
                cfg,
                TrainOptions(
                    run_dir=run_dir,
                    audio_dir=self.audio_dir,
                    resume=resume,
                    cache_dir=self.cache_dir,
                    verbose=self.verbose,
                ),
                model=model,
                strategy=self.strategy,
                extra_callbacks=[*(kwargs.get("callbacks") or []), clock],
            )
            return self._history(run_dir, model, cfg)
        finally:
            clock.write()

    def _history(self, run_dir: str, model: keras.Model, cfg: Config) -> keras.callbacks.History:
        """The whole per-epoch record, also of epochs trained before an interruption, plus
        the probe accuracy (the same value for every epoch) when the sweep has labels.
        """
        history = keras.callbacks.History()
        history.history = {}
        for row in history_rows(run_dir):
            for k, v in row.items():
                if k != "epoch":
                    history.history.setdefault(k, []).append(v)
        chance = None
        if self.labels:
            acc, chance = self._probe(model, cfg)
            epochs = max(1, len(next(iter(history.history.values()), [])))
            history.history[PROBE_OBJECTIVE] = [acc] * epochs
        elif is_contrastive_accuracy(self.sweep.objective):
            from cpc_tf.models.registry import contrastive_chance

            chance = contrastive_chance(cfg)
        if chance is not None:
            write_chance(run_dir, chance)
        if self.sweep.objective not in history.history:
            raise TrainingError(f"the trial reported no {self.sweep.objective}")
        return history

    def _probe(self, model: keras.Model, cfg: Config) -> tuple[float, float]:
        """Extract the trial's embeddings of the audio folder and probe them on the labels;
        returns the accuracy and its chance level (the commonest class).
        """
        import numpy as np

        from cpc_tf.audio.cache import open_cache_for
        from cpc_tf.audio.labels import parse_label_source
        from cpc_tf.extract import extract_embeddings

        cache = open_cache_for(cfg, self.audio_dir, cache_dir=self.cache_dir, progress=False)
        arrays = extract_embeddings(model, cfg, cache, progress=False)
        by_id = {c.clip_id: c.path for c in cache.clips}
        paths = np.array([by_id[int(i)] for i in arrays["clip_id"]])
        assert self.labels is not None  # the probe objective is only chosen with --labels
        labels = np.array(
            parse_label_source(self.labels, self.audio_dir).labels_for(paths.tolist()), dtype=str
        )
        accuracy = probe_accuracy(
            arrays["embeddings"], paths, labels, cfg.eval, source=f"--labels {self.labels}"
        )
        return accuracy, probe_chance(paths, labels, cfg.eval)

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


# ------------------------------------------------------------------ the tuner
def _tuner_class(name: str) -> type:
    base = {
        "random": kt.RandomSearch,
        "bayesian": kt.BayesianOptimization,
        "hyperband": kt.Hyperband,
    }[name]

    class SweepTuner(base):  # type: ignore[misc, valid-type]
        """Passes the trial id to the HyperModel, rewrites the results after each trial,
        and stops after too many failed trials in a row.
        """

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
                raise TrainingError(
                    f"the sweep stopped after {streak} failed trials in a row "
                    f"(sweep.max_consecutive_failures={limit}); last error: "
                    f"{_last_error_line(self.oracle.trials[self.oracle.end_order[-1]].message)}"
                )

    SweepTuner.__name__ = f"Sweep{base.__name__}"
    return SweepTuner


def make_tuner(
    sweep: Sweep, hypermodel: SweepHyperModel, tune_dir: str, max_trials: int
) -> kt.Tuner:
    """The Keras Tuner tuner of the sweep (resumes from `tune_dir` when it holds one)."""
    objective = kt.Objective(sweep.objective, direction=sweep.direction)
    common = dict(
        hypermodel=hypermodel,
        objective=objective,
        directory=tune_dir,
        project_name="keras_tuner",
        overwrite=False,
        executions_per_trial=sweep.executions_per_trial,
        distribution_strategy=None,
        max_consecutive_failed_trials=10**9,  # see on_trial_end
        sweep=sweep,
        tune_dir=tune_dir,
    )
    cls = _tuner_class(sweep.tuner)
    try:
        if sweep.tuner == "hyperband":
            return cls(
                max_epochs=sweep.hyperband_max_epochs or sweep.base.train.epochs,
                factor=3,
                seed=sweep.base.train.seed,
                **common,
            )
        return cls(max_trials=max_trials, seed=sweep.base.train.seed, **common)
    except (ValueError, KeyError, RuntimeError) as exc:  # unreadable Keras Tuner state
        raise DataError(
            f"cannot continue the sweep in {tune_dir}: its keras_tuner/ state is unreadable "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "use a new --out"
        ) from None
