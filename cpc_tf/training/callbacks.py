"""Keras callbacks made safe for long runs, and the set every run uses.

Keras' own ``ModelCheckpoint`` and ``BackupAndRestore`` write their files in place, so a
run killed mid-write leaves a truncated file that the next ``--resume`` cannot read.
These subclasses check the free space first, write to a temporary file in the same
folder and ``os.replace`` it over the target, which is atomic on POSIX file systems.
:class:`CheckpointRetention` keeps the checkpoints folder small, :class:`StepScalars`
writes per-step TensorBoard scalars (``train.log_every_steps``).
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import keras
import tensorflow as tf

from cpc_tf.config import Config
from cpc_tf.fileio import atomic_write, atomic_write_text, remove_stale_temps
from cpc_tf.training.disk import check_free_space, estimate_bytes
from cpc_tf.training.run_folder import RunFolder, history_rows

CHECKPOINT_NAME = "epoch_{epoch:03d}.weights.h5"


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` whose files are written atomically."""

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, batch, logs, filepath):
            return
        folder = os.path.dirname(os.path.abspath(filepath))
        check_free_space(
            folder,
            estimate_bytes(self.model, _newest(folder, ".weights.h5")),
            f"the checkpoint of epoch {epoch + 1}",
        )
        if self.save_weights_only:
            atomic_write(lambda p: self.model.save_weights(p, overwrite=True), filepath)
        else:
            atomic_write(lambda p: self.model.save(p, overwrite=True), filepath)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` with atomic writes: weights first, then the epoch marker.

    A kill between the two leaves the previous epoch's marker, so the epoch is simply
    redone. ``delete_checkpoint`` defaults to False here so a finished run can be
    extended with ``--resume --epochs N``. With ``write=False`` (non-chief workers) it
    restores from the shared backup but never writes it.
    """

    def __init__(
        self, backup_dir: str, delete_checkpoint: bool = False, write: bool = True
    ) -> None:
        super().__init__(
            backup_dir,
            save_freq="epoch",
            double_checkpoint=False,
            delete_checkpoint=delete_checkpoint,
        )
        self.write = write  # False on non-chief workers: they restore but never write

    def on_train_begin(self, logs=None):
        if self.write:  # a kill -9 during a backup leaves its half-written temporary file
            remove_stale_temps(self.backup_dir)
        super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        if self.write:
            super().on_train_end(logs)

    def _save_model(self):
        if not self.write:
            return
        check_free_space(
            self.backup_dir, estimate_bytes(self.model, self._weights_path), "the resume backup"
        )
        atomic_write(lambda p: self.model.save_weights(p, overwrite=True), self._weights_path)
        atomic_write_text(
            self._training_metadata_path,
            json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}),
        )

    def completed_epochs(self) -> int:
        """Epochs recorded by the last backup (0 when there is none)."""
        return completed_epochs(self.backup_dir)


def completed_epochs(backup_dir: str) -> int:
    """Epochs recorded by the backup in `backup_dir` (0 when there is none)."""
    try:
        with open(os.path.join(backup_dir, "training_metadata.json"), encoding="utf-8") as fh:
            return int(json.load(fh)["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


class CheckpointRetention(keras.callbacks.Callback):
    """Keep the last `keep` per-epoch checkpoints and the best one; delete the others.

    "Best" is the epoch with the lowest ``val_loss`` (``loss`` without validation),
    seeded from `history` rows on resume. ``keep=0`` keeps every checkpoint. Only names
    ``epoch_NNN.weights.h5`` in `folder` are ever deleted. Resuming needs none of them
    (it reads ``checkpoints/backup``); model.keras is the last epoch, always kept.
    """

    def __init__(
        self, folder: str, keep: int, history: list[dict[str, float]] | None = None
    ) -> None:
        super().__init__()
        self.folder, self.keep = folder, keep
        self.best: tuple[float, int] | None = None
        for row in history or []:
            self._note(int(row.get("epoch", -1)), row)

    def _note(self, epoch: int, logs: dict[str, float]) -> None:
        value = logs.get("val_loss", logs.get("loss"))
        if (
            epoch >= 0
            and value is not None
            and math.isfinite(value)
            and (self.best is None or value < self.best[0])
        ):
            self.best = (float(value), epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._note(epoch, logs or {})
        if self.keep <= 0:
            return
        epochs = sorted(n for n in (_checkpoint_epoch(name) for name in _listdir(self.folder)) if n)
        keep = set(epochs[-self.keep :]) | ({self.best[1] + 1} if self.best else set())
        for n in epochs:
            if n not in keep:
                try:
                    os.remove(os.path.join(self.folder, CHECKPOINT_NAME.format(epoch=n)))
                except OSError:
                    pass


class StepScalars(keras.callbacks.Callback):
    """TensorBoard scalars ``batch_<metric>`` every `every` steps (``train.log_every_steps``).

    The values are the epoch's running means, as Keras' own progress bar and
    ``TensorBoard(update_freq=N)`` show them; the step is global (epoch × steps + step),
    so a resumed run continues the curve.
    """

    def __init__(self, log_dir: str, every: int, steps_per_epoch: int) -> None:
        super().__init__()
        self.log_dir, self.every, self.steps_per_epoch = log_dir, every, steps_per_epoch
        self._writer: Any = None
        self._epoch = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = self._epoch * self.steps_per_epoch + batch + 1
        if self._writer is None or step % self.every:
            return
        with self._writer.as_default(step=step):
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"batch_{name}", float(value))

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def standard_callbacks(
    run: RunFolder, cfg: Config, steps_per_epoch: int, chief: bool, scratch: str
) -> tuple[list[keras.callbacks.Callback], AtomicBackupAndRestore]:
    """The standard callbacks; non-chief workers write to a scratch folder.

    Every worker restores from the run's own backup (all replicas must start from the
    same state), but only the chief writes it. The backup is driven *last* (the caller
    appends it after any extra callbacks): it marks an epoch as done only once the
    checkpoint and the history row of that epoch are on disk, so a kill in between
    redoes the epoch instead of losing its row.
    """
    root = RunFolder(run.root if chief else scratch)
    backup = AtomicBackupAndRestore(run.backup_dir, write=chief)
    cbs: list[keras.callbacks.Callback] = [
        AtomicModelCheckpoint(
            os.path.join(root.checkpoint_dir, CHECKPOINT_NAME), save_weights_only=True, verbose=0
        ),
        keras.callbacks.CSVLogger(root.history_path, append=True),
        CheckpointRetention(
            root.checkpoint_dir, cfg.train.keep_checkpoints, history_rows(root.root)
        ),
        keras.callbacks.TensorBoard(
            root.tensorboard_dir, write_graph=False, update_freq="epoch", profile_batch=0
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    if cfg.train.log_every_steps:
        cbs.append(
            StepScalars(
                os.path.join(root.tensorboard_dir, "train"),
                cfg.train.log_every_steps,
                steps_per_epoch,
            )
        )
    return cbs, backup


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _checkpoint_epoch(name: str) -> int:
    """The epoch number (1-based) of a checkpoint file name, 0 for any other name."""
    match = re.fullmatch(r"epoch_(\d+)\.weights\.h5", name)
    return int(match.group(1)) if match else 0


def _newest(folder: str, suffix: str) -> str | None:
    """The path of the last (by name) file in `folder` ending in `suffix`, if any."""
    names = sorted(n for n in _listdir(folder) if n.endswith(suffix))
    return os.path.join(folder, names[-1]) if names else None
