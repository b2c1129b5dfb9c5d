"""Old home of the atomic Keras callbacks; they live in :mod:`cpc_tf.training.callbacks`."""

from cpc_tf.training.callbacks import AtomicBackupAndRestore, AtomicModelCheckpoint

__all__ = ["AtomicBackupAndRestore", "AtomicModelCheckpoint"]
