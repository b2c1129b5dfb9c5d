"""`cpc_tf extract --tensorboard DIR`: embeddings for TensorBoard's Embedding Projector.

The folder gets what ``tensorboard.plugins.projector`` reads:

* ``embedding.ckpt-N.*`` and ``checkpoint`` — a TensorFlow checkpoint that holds the
  embeddings as one variable (rewriting the folder keeps only the newest checkpoint);
* ``metadata.tsv`` — one row per embedding, in the same order, with a header:
  ``label``, ``path``, ``crop_start`` and ``crop_end`` (seconds; both 0 for pooled rows,
  which stand for the whole file);
* ``projector_config.pbtxt`` — ties the two together.

View it with ``tensorboard --logdir DIR`` and open the "Projector" tab.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from cpc_tf.errors import DataError
from cpc_tf.fileio import atomic_write_text

METADATA_FILE = "metadata.tsv"
CHECKPOINT_NAME = "embedding.ckpt"
#: The variable's name inside the checkpoint (what the projector config points at).
TENSOR_NAME = "embedding/.ATTRIBUTES/VARIABLE_VALUE"


def _cell(value: object) -> str:
    """One TSV cell: tabs and line breaks would split rows or columns, so they become spaces."""
    return " ".join(str(value).replace("\t", " ").splitlines())


def metadata_text(
    paths: Sequence[str], labels: Sequence[str], crop_start: np.ndarray, crop_seconds: float | None
) -> str:
    """The metadata.tsv text: a header and one row per embedding.

    ``crop_seconds`` None marks pooled rows (one per file): their crop times are 0.
    """
    lines = ["label\tpath\tcrop_start\tcrop_end"]
    for path, label, start in zip(paths, labels, np.asarray(crop_start, np.float64).tolist()):
        end = start + crop_seconds if crop_seconds is not None else 0.0
        lines.append(f"{_cell(label) or '(unlabelled)'}\t{_cell(path)}\t{start:.3f}\t{end:.3f}")
    return "\n".join(lines) + "\n"


def write_projector(
    log_dir: str,
    embeddings: np.ndarray,
    paths: Sequence[str],
    labels: Sequence[str],
    crop_start: np.ndarray,
    crop_seconds: float | None,
) -> str:
    """Write the checkpoint, metadata.tsv and projector_config.pbtxt into `log_dir`.

    Args:
        log_dir: The TensorBoard log folder (created if missing).
        embeddings: float ``[n, d]`` rows.
        paths: ``[n]`` file of each row.
        labels: ``[n]`` label of each row ('' if none).
        crop_start: ``[n]`` seconds.
        crop_seconds: Crop length, or None for pooled rows.

    Returns:
        The path of the projector config.
    """
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim != 2 or not len(emb):
        raise DataError(f"--tensorboard: no embeddings to write (shape {emb.shape})")
    try:
        os.makedirs(log_dir, exist_ok=True)
    except OSError as exc:
        raise DataError(f"--tensorboard: cannot create {log_dir}: {exc.strerror or exc}") from None
    import tensorflow as tf
    from tensorboard.plugins import projector

    atomic_write_text(
        os.path.join(log_dir, METADATA_FILE),
        metadata_text(
            [str(p) for p in paths], [str(lab) for lab in labels], crop_start, crop_seconds
        ),
    )
    checkpoint = tf.train.Checkpoint(embedding=tf.Variable(emb, trainable=False))
    tf.train.CheckpointManager(
        checkpoint, log_dir, max_to_keep=1, checkpoint_name=CHECKPOINT_NAME
    ).save()
    config = projector.ProjectorConfig()
    item = config.embeddings.add()
    item.tensor_name = TENSOR_NAME
    item.metadata_path = METADATA_FILE
    projector.visualize_embeddings(log_dir, config)
    return os.path.join(log_dir, "projector_config.pbtxt")
