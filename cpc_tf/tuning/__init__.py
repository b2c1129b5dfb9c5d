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

from cpc_tf.tuning.hypermodel import SweepHyperModel, make_tuner
from cpc_tf.tuning.results import write_results
from cpc_tf.tuning.run import _check_same_sweep, run_sweep
from cpc_tf.tuning.sweep import (PROBE_OBJECTIVE, SWEEP_FIELDS, TUNERS, ParamSpec, Sweep, config_for,
                                 load_sweep)
from cpc_tf.evaluation.objective import probe_accuracy

__all__ = ["PROBE_OBJECTIVE", "SWEEP_FIELDS", "TUNERS", "ParamSpec", "Sweep", "SweepHyperModel",
           "config_for", "load_sweep", "make_tuner", "probe_accuracy", "run_sweep", "write_results"]
