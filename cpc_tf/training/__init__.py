"""The training engine: one custom loop for every tf.distribute strategy.

Modules, by responsibility:

- :mod:`~cpc_tf.training.distribute`: the strategy, and the cluster (chief, workers, lost peers).
- :mod:`~cpc_tf.training.run_folder`: the run folder's paths, run.json and history.csv.
- :mod:`~cpc_tf.training.optim`: the optimiser, learning-rate schedule, dtype policy, compiled
  model.
- :mod:`~cpc_tf.training.loop`: the ``strategy.run`` loop that drives the Keras callbacks.
- :mod:`~cpc_tf.training.callbacks`: atomic checkpoints and backups, checkpoint retention,
  per-step scalars, the standard callback set.
- :mod:`~cpc_tf.training.disk`: free-space checks before checkpoints, a full disk recognised.
- :mod:`~cpc_tf.training.command`: ``cpc_tf train`` itself (orchestration).
- :mod:`~cpc_tf.training.export`: the SavedModel export and the trained model read back.
- :mod:`~cpc_tf.training.launch`: ``cpc_tf train --workers N`` (local worker processes).

The public names of all of them are importable from ``cpc_tf.training`` itself; each
is imported on first use, so ``import cpc_tf.training`` loads nothing heavy (the
launcher, for one, never needs TensorFlow).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "distribute": ("is_chief", "logical_cpu_devices", "make_strategy", "task_name", "worker_count"),
    "run_folder": ("CONFIG_FILE", "STATE_FILE", "RunFolder", "history_rows", "truncate_history"),
    "optim": ("WarmupSchedule", "compile_model", "dtype_policy", "make_optimizer"),
    "loop": ("FitResult", "Trainer"),
    "callbacks": ("AtomicBackupAndRestore", "AtomicModelCheckpoint"),
    "command": ("TrainOptions", "train"),
    "export": ("export_savedmodel", "load_run_model"),
    "launch": ("free_ports", "launch_local_workers", "run_workers", "tf_config", "worker_argv"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "CONFIG_FILE",
    "STATE_FILE",
    "AtomicBackupAndRestore",
    "AtomicModelCheckpoint",
    "FitResult",
    "RunFolder",
    "TrainOptions",
    "Trainer",
    "WarmupSchedule",
    "compile_model",
    "dtype_policy",
    "export_savedmodel",
    "free_ports",
    "history_rows",
    "is_chief",
    "launch_local_workers",
    "load_run_model",
    "logical_cpu_devices",
    "make_optimizer",
    "make_strategy",
    "run_workers",
    "task_name",
    "tf_config",
    "train",
    "truncate_history",
    "worker_argv",
    "worker_count",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines `name` on first use (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
