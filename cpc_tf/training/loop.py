"""The training loop: ``strategy.run(model.train_step)`` driving the Keras callbacks.

Keras 3's ``model.fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585),
so cpc_tf drives training itself: ``strategy.run(model.train_step)`` over
``strategy.distribute_datasets_from_function``, with the standard Keras callbacks
(ModelCheckpoint, BackupAndRestore, TensorBoard, CSVLogger, TerminateOnNaN and the
progress bar) called by the loop exactly as ``fit`` would call them. The same path
serves no strategy, MirroredStrategy (GPUs or logical CPUs) and multi-worker.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from cpc_tf.errors import TrainingError
from cpc_tf.training.distribute import worker_count


# ------------------------------------------------------------------ the loop
@dataclass
class FitResult:
    """What a finished (or stopped) training run produced."""

    epochs_completed: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_on_nan: bool = False


class _RunningMeans:
    """Mean of each logged value over the steps of an epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float]) -> dict[str, float]:
        self.count += 1
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        return self.means()

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


class Trainer:
    """Runs the custom distributed loop for a built model.

    Args:
      model: a compiled :class:`~cpc_tf.models.base.ContrastiveModel` created inside
        ``strategy.scope()``.
      strategy: the tf.distribute strategy.
      dataset_fn: ``(input_context, epoch, training) -> tf.data.Dataset`` giving endless
        per-replica batches; `epoch` (the first epoch of this fit) seeds the stream, so a
        resumed run draws different crops from the ones it already saw.
    """

    def __init__(
        self,
        model: keras.Model,
        strategy: tf.distribute.Strategy,
        dataset_fn: Any,
        jit_compile: bool = False,
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.dataset_fn = dataset_fn
        step, test = model.train_step, model.test_step
        if jit_compile and strategy.num_replicas_in_sync == 1:
            step, test = tf.function(step, jit_compile=True), tf.function(test, jit_compile=True)
        self.train_fn = self._distributed(step)
        self.test_fn = self._distributed(test)
        self._val_dist: Any = None

    def _distributed(self, step: Any) -> Any:
        """`step` run on every replica, its outputs averaged over the replicas (one tf.function)."""
        strategy = self.strategy

        @tf.function
        def run(batch: Any) -> dict[str, tf.Tensor]:
            out = strategy.run(step, args=(batch,))
            return {
                k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in out.items()
            }

        return run

    def _check_same_start(self, start: int) -> None:
        """Fail on every worker alike unless all restored the same epoch.

        Each worker restores the chief's backup itself; one that saw no backup, or a
        stale one (storage not shared, or not yet consistent), would start elsewhere
        and wait on collectives the others never join. The sums of x and x² over the
        replicas show whether all x are equal (n·Σx² = (Σx)² exactly then), and every
        worker computes the same verdict.
        """
        x = tf.constant(float(start))
        per_replica = self.strategy.run(lambda: tf.stack([x, x * x, 1.0]))
        total, squares, n = (
            float(v)
            for v in self.strategy.reduce(
                tf.distribute.ReduceOp.SUM, per_replica, axis=None
            ).numpy()
        )
        if n * squares != total * total:
            raise TrainingError(
                f"the workers restored different epochs (this one: {start}); every "
                "worker must read the chief's checkpoints/backup from shared storage"
            )

    def _dist(self, epoch: int, training: bool) -> Any:
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: self.dataset_fn(ctx, epoch, training)
        )

    def evaluate(self, steps: int) -> dict[str, float]:
        """Mean metrics over `steps` validation batches (the same crops every time).

        The validation dataset is built (and its map functions traced) once; each call
        starts a fresh iterator over it, which replays the same seeded crops.
        """
        if self._val_dist is None:
            self._val_dist = self._dist(0, False)
        means = _RunningMeans()
        iterator = iter(self._val_dist)
        for _ in range(steps):
            out = self.test_fn(next(iterator))
            means.add({k: float(v) for k, v in out.items()})
        return means.means()

    def fit(
        self,
        epochs: int,
        steps_per_epoch: int,
        callbacks: list[keras.callbacks.Callback],
        validation_steps: int = 0,
        verbose: int = 1,
    ) -> FitResult:
        """Train until `epochs`, starting where BackupAndRestore left off.

        ``verbose=1`` shows Keras' progress bar, which becomes one line per epoch
        (``verbose=2``) when stdout is not a terminal, so logs hold no control codes.
        """
        model = self.model
        verbose = progress_verbosity(verbose)
        cb = keras.callbacks.CallbackList(
            callbacks,
            add_history=True,
            add_progbar=verbose > 0,
            model=model,
            verbose=verbose,
            epochs=epochs,
            steps=steps_per_epoch,
        )
        model.stop_training = False
        model._initial_epoch = None  # set by BackupAndRestore.on_train_begin when resuming
        cb.on_train_begin()
        start = int(getattr(model, "_initial_epoch", None) or 0)
        if worker_count(self.strategy) > 1:
            self._check_same_start(start)
        result = FitResult(epochs_completed=start)
        # One endless dataset for the whole fit, seeded by the first epoch: rebuilding it
        # per epoch would re-trace its map functions (the augmentation chain) every time.
        iterator = iter(self._dist(start, True)) if start < epochs else None
        for epoch in range(start, epochs):
            cb.on_epoch_begin(epoch)
            logs = self._train_epoch(iterator, steps_per_epoch, cb)
            if logs is None:
                # Never call on_epoch_end with NaN weights: checkpoints and the backup
                # keep the last good epoch. on_train_end is skipped for the same reason.
                result.stopped_on_nan = True
                return result
            if validation_steps:
                logs.update({f"val_{k}": v for k, v in self.evaluate(validation_steps).items()})
            cb.on_epoch_end(epoch, logs)
            result.history.append({"epoch": epoch, **logs})
            result.epochs_completed = epoch + 1
            if model.stop_training:
                break
        cb.on_train_end()
        return result

    def _train_epoch(
        self, iterator: Any, steps: int, cb: keras.callbacks.CallbackList
    ) -> dict[str, float] | None:
        """One epoch of `steps` steps; the mean logs, or None when the loss became NaN/Inf."""
        means = _RunningMeans()
        for step in range(steps):
            cb.on_train_batch_begin(step)
            values = {k: float(v) for k, v in self.train_fn(next(iterator)).items()}
            cb.on_train_batch_end(step, means.add(values))  # TerminateOnNaN sees the raw NaN too
            if not math.isfinite(values["loss"]):
                return None
        return means.means()


def progress_verbosity(verbose: int) -> int:
    """Keras' ``verbose`` for the progress display: a bar (1) only on a terminal or in Jupyter.

    Keras 3 draws its bar with backspaces and carriage returns whenever it runs on
    POSIX, terminal or not; in a log file that is noise, so one line per epoch (2) instead.
    """
    if verbose != 1:
        return verbose
    interactive = (
        hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    ) or "ipykernel" in sys.modules
    return 1 if interactive else 2
