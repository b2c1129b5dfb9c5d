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

import importlib
from typing import Any

# Public name -> the module that defines it. Imported on first use, so that reading a
# sweep file (`load_sweep`) does not load TensorFlow or Keras Tuner.
_EXPORTS = {
    "PROBE_OBJECTIVE": "cpc_tf.evaluation.objective",
    "probe_accuracy": "cpc_tf.evaluation.objective",
    "TUNERS": "cpc_tf.tuning.sweep",
    "SWEEP_FIELDS": "cpc_tf.tuning.sweep",
    "ParamSpec": "cpc_tf.tuning.sweep",
    "Sweep": "cpc_tf.tuning.sweep",
    "load_sweep": "cpc_tf.tuning.sweep",
    "check_tuner": "cpc_tf.tuning.sweep",
    "SweepHyperModel": "cpc_tf.tuning.hypermodel",
    "make_tuner": "cpc_tf.tuning.hypermodel",
    "write_results": "cpc_tf.tuning.results",
    "run_sweep": "cpc_tf.tuning.run",
    "_check_same_sweep": "cpc_tf.tuning.run",
}
__all__ = sorted(name for name in _EXPORTS if not name.startswith("_"))


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cpc_tf.tuning' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
