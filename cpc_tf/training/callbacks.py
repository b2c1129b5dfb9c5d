"""Keras callbacks made safe for long runs: atomic writes, chief-only writing.

Keras' own ``ModelCheckpoint`` and ``BackupAndRestore`` write their files in place, so a
run killed mid-write leaves a truncated file that the next ``--resume`` cannot read.
These subclasses write to a temporary file in the same folder and ``os.replace`` it
over the target, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import json
import os

import keras

from cpc_tf.fileio import atomic_write, atomic_write_text, remove_stale_temps
from cpc_tf.training.run_folder import RunFolder


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` whose files are written atomically."""

    def _save_model(self, epoch, batch, logs):  # noqa: D401  (Keras hook)
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, batch, logs, filepath):
            return
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

    def __init__(self, backup_dir: str, delete_checkpoint: bool = False, write: bool = True) -> None:
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=False,
                         delete_checkpoint=delete_checkpoint)
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
        os.makedirs(self.backup_dir, exist_ok=True)
        atomic_write(lambda p: self.model.save_weights(p, overwrite=True), self._weights_path)
        atomic_write_text(self._training_metadata_path,
                          json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))

    def completed_epochs(self) -> int:
        """Epochs recorded by the last backup (0 when there is none)."""
        try:
            with open(self._training_metadata_path, encoding="utf-8") as fh:
                return int(json.load(fh)["epoch"])
        except (OSError, ValueError, KeyError):
            return 0


def _callbacks(run: RunFolder, chief: bool, scratch: str) -> tuple[list[keras.callbacks.Callback], AtomicBackupAndRestore]:
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
        AtomicModelCheckpoint(os.path.join(root.checkpoint_dir, "epoch_{epoch:03d}.weights.h5"),
                              save_weights_only=True, verbose=0),
        keras.callbacks.CSVLogger(root.history_path, append=True),
        keras.callbacks.TensorBoard(root.tensorboard_dir, write_graph=False, update_freq="epoch",
                                    profile_batch=0),
        keras.callbacks.TerminateOnNaN(),
    ]
    return cbs, backup

