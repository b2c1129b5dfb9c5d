"""The probe objective of a sweep: linear-probe accuracy of a trial's embeddings.

Works on arrays (one row per crop, the file each row came from and its label), like
the rest of :mod:`cpc_tf.evaluation`; the trial extracts them (``cpc_tf.tuning``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpc_tf.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from cpc_tf.config import EvalConfig

PROBE_OBJECTIVE = "probe_acc"


def probe_accuracy(
    embeddings: np.ndarray,
    paths: np.ndarray,
    labels: np.ndarray,
    cfg: EvalConfig,
    source: str = "--labels",
) -> float:
    """Probe accuracy on a file-level split (``cfg.test_fraction``, ``cfg.seed``) of the
    labelled rows; rows with an empty label are left out. `source` names the labels in errors.
    """
    from cpc_tf.evaluation.probe import train_probe
    from cpc_tf.evaluation.splits import split_by_file

    keep = labels != ""
    x, y, paths = embeddings[keep], labels[keep], paths[keep]
    if len(set(y.tolist())) < 2:
        raise DataError(f"{source}: fewer than two classes among the files")
    train_idx, test_idx = split_by_file(paths, y, test_fraction=cfg.test_fraction, seed=cfg.seed)
    result = train_probe(
        x[train_idx], y[train_idx], x[test_idx], y[test_idx], cfg, train_files=paths[train_idx]
    )
    return float(result.accuracy)


def probe_chance(paths: np.ndarray, labels: np.ndarray, cfg: EvalConfig) -> float:
    """The probe accuracy of always answering the commonest class of the training side, on the
    same file-level split as :func:`probe_accuracy` (chance for a sweep's probe objective).
    """
    import numpy as np

    from cpc_tf.evaluation.splits import split_by_file

    keep = labels != ""
    y, paths = labels[keep], paths[keep]
    train_idx, test_idx = split_by_file(paths, y, test_fraction=cfg.test_fraction, seed=cfg.seed)
    classes, counts = np.unique(y[train_idx], return_counts=True)
    return float(np.mean(y[test_idx] == classes[int(np.argmax(counts))]))
