"""`cpc_tf tune`: validate a sweep, run (or continue) it, write its results."""

from __future__ import annotations

import json
import os
from typing import Any

from cpc_tf.checks import check_number
from cpc_tf.errors import ConfigError, DataError, TrainingError
from cpc_tf.fileio import atomic_write_text
from cpc_tf.training import make_strategy
from cpc_tf.tuning.hypermodel import SweepHyperModel, make_tuner
from cpc_tf.tuning.results import write_results
from cpc_tf.tuning.sweep import Sweep, check_tuner, load_sweep

STATE_FILE = "sweep.json"


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
            raise ConfigError(
                f"{tune_dir} holds a different sweep (changed: {', '.join(changed[:4])}"
                f"{' ...' if len(changed) > 4 else ''}); rerun the original command "
                "to continue it, or give a new --out"
            )
    elif os.path.isdir(os.path.join(tune_dir, "keras_tuner")):
        raise ConfigError(
            f"{tune_dir} holds Keras Tuner state but no {STATE_FILE}; give a new --out"
        )
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


def _decode_once(
    sweep: Sweep, audio_dir: str, cache_dir: str | None, labels: str | None, verbose: int
) -> None:
    """Build the audio cache before the first trial (its errors are not trial failures) and
    check that the labels give the probe objective at least two classes.
    """
    from cpc_tf.audio.cache import open_cache_for
    from cpc_tf.audio.labels import parse_label_source

    label_source = parse_label_source(labels, audio_dir) if labels else None
    cache = open_cache_for(sweep.base, audio_dir, cache_dir=cache_dir, progress=verbose > 0)
    if label_source is not None:
        classes = {label_source.label_for(c.path) for c in cache.clips} - {""}
        if len(classes) < 2:
            raise DataError(
                f"--labels {labels}: the files of {audio_dir} have {len(classes)} class(es); "
                "the probe objective needs at least two"
            )


def run_sweep(
    sweep_path: str,
    audio_dir: str,
    tune_dir: str,
    overrides: list[str] | None = None,
    max_trials: int | None = None,
    tuner_name: str | None = None,
    strategy_name: str | None = None,
    labels: str | None = None,
    cache_dir: str | None = None,
    verbose: int = 1,
) -> list[dict[str, Any]]:
    """`cpc_tf tune`: validate the sweep, run (or continue) it, write the results.

    Every mistake in the sweep, the labels or the audio folder is reported before the
    first trial. Returns the result rows; raises :class:`TrainingError` when no trial
    completed.
    """
    sweep = load_sweep(sweep_path, overrides, labels=labels)
    if tuner_name:
        sweep.tuner = check_tuner(tuner_name, "--tuner")
    trials = (
        sweep.max_trials
        if max_trials is None
        else check_number("--max-trials", max_trials, integer=True, minimum=1)
    )
    if labels:
        from cpc_tf.audio.labels import parse_label_source

        parse_label_source(labels, audio_dir)  # a bad --labels fails before the folder is touched
    from cpc_tf.audio.files import check_audio_folder

    check_audio_folder(audio_dir)
    strategy = make_strategy(strategy_name or sweep.base.train.strategy)
    _check_same_sweep(sweep, tune_dir)  # creates tune_dir
    _decode_once(sweep, audio_dir, cache_dir, labels, verbose)

    hypermodel = SweepHyperModel(
        sweep, audio_dir, tune_dir, cache_dir, strategy, labels=labels, verbose=verbose
    )
    tuner = make_tuner(sweep, hypermodel, tune_dir, trials)
    tuner.search()
    rows = write_results(tuner, sweep, tune_dir)
    if rows and not any(r["status"] == "COMPLETED" for r in rows):
        last = next((r["error"] for r in reversed(rows) if r["error"]), "")
        raise TrainingError(
            f"no trial of the sweep completed ({len(rows)} failed); see "
            f"{os.path.join(tune_dir, 'results.md')}; last error: {last}"
        )
    return rows
