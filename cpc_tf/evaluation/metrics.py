"""Downstream metrics with scikit-learn, at crop level and at file level.

* Single-label (Bajorath et al. 2021, §2.3.2): accuracy and macro-F1, and the confusion matrix
  normalised so that the whole matrix sums to 1. Its diagonal then sums to the
  accuracy, its row sums are the class frequencies and its column sums are how often
  each class was predicted (Bajorath et al. 2021, §2.3.2, last paragraph).
* Multi-label (Spijkervet & Burgoyne 2021, §3.6, §4.4): ROC-AUC and PR-AUC (average precision), both
  tag-wise (per tag over clips, then the mean over tags) and clip-wise (per clip over
  tags, then the mean over clips). A tag (clip) on which a score is undefined -- ROC
  needs positives and negatives, PR needs a positive -- is left out of the mean; when
  nothing is left the value is NaN (written as null in metrics.json).
* File level: the probabilities of all crops of one file are averaged ("chunk
  predictions are averaged into one prediction per track"), then argmax (single-label)
  or the 0.5 threshold (multi-label F1) is applied.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cpc_tf.evaluation.embeddings import natural_key, split_tags


# ------------------------------------------------------------ label space
def class_names(labels: Sequence[str] | np.ndarray, multilabel: bool) -> list[str]:
    """Class names (or tags, for multi-label data) in natural order ('c2' before 'c10')."""
    names: set[str] = set()
    for lab in np.asarray(labels).tolist():
        names.update(split_tags(lab) if multilabel else [lab])
    return sorted(names, key=natural_key)


def encode_labels(
    labels: Sequence[str] | np.ndarray, classes: Sequence[str], multilabel: bool
) -> np.ndarray:
    """Class indices (int64 [n]) or a multi-hot matrix (float32 [n, T])."""
    index = {c: i for i, c in enumerate(classes)}
    labels = np.asarray(labels).tolist()
    if not multilabel:
        return np.asarray([index[lab] for lab in labels], dtype=np.int64)
    out = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for r, lab in enumerate(labels):
        for t in split_tags(lab):
            out[r, index[t]] = 1.0
    return out


# --------------------------------------------------------- single-label
def single_label_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of the argmax prediction.

    Macro-F1 averages over the classes present in the truth or the predictions
    (scikit-learn's default); a class with no true and no predicted sample is ignored.
    """
    from sklearn.metrics import accuracy_score, f1_score

    y_pred = np.asarray(probs).argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def normalized_confusion(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confusion matrix (rows true, columns predicted) summing to 1, with row and column sums."""
    from sklearn.metrics import confusion_matrix

    if len(y_true) == 0:
        m = np.zeros((n_classes, n_classes))
    else:
        m = confusion_matrix(y_true, y_pred, labels=np.arange(n_classes), normalize="all")
    return m, m.sum(axis=1), m.sum(axis=0)


# ---------------------------------------------------------- multi-label
def _mean_defined(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _auc_over_columns(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Mean ROC-AUC and mean PR-AUC over columns on which each is defined."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    roc, pr = [], []
    for j in range(y_true.shape[1]):
        t, s = y_true[:, j], scores[:, j]
        positives = int(t.sum())
        if positives > 0:
            pr.append(float(average_precision_score(t, s)))
            if positives < t.size:
                roc.append(float(roc_auc_score(t, s)))
    return _mean_defined(roc), _mean_defined(pr)


def tagwise_auc(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(ROC-AUC, PR-AUC) per tag over clips, averaged over tags (macro over tags)."""
    return _auc_over_columns(np.asarray(y_true), np.asarray(scores))


def clipwise_auc(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(ROC-AUC, PR-AUC) per clip over tags, averaged over clips (macro over clips)."""
    return _auc_over_columns(np.asarray(y_true).T, np.asarray(scores).T)


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Tag-wise and clip-wise ROC-AUC / PR-AUC, plus tag-wise macro-F1 at threshold 0.5."""
    from sklearn.metrics import f1_score

    roc_t, pr_t = tagwise_auc(y_true, probs)
    roc_c, pr_c = clipwise_auc(y_true, probs)
    f1 = f1_score(
        y_true.astype(int), (np.asarray(probs) >= 0.5).astype(int), average="macro", zero_division=0
    )
    return {
        "roc_auc_tag": roc_t,
        "pr_auc_tag": pr_t,
        "roc_auc_clip": roc_c,
        "pr_auc_clip": pr_c,
        "macro_f1": float(f1),
    }


# ---------------------------------------------------------- aggregation
def aggregate_by_file(
    values: np.ndarray, paths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of the rows of each file.

    Returns ``(files, means, first_row)``: the sorted unique paths, the mean of
    `values` over each file's rows, and the index of one row of each file (to read
    the file's label from).
    """
    files, first, inverse = np.unique(paths, return_index=True, return_inverse=True)
    values = np.asarray(values, dtype=np.float64)
    sums = np.zeros((files.size,) + values.shape[1:])
    np.add.at(sums, inverse, values)
    counts = np.bincount(inverse, minlength=files.size).reshape((-1,) + (1,) * (values.ndim - 1))
    return files, sums / counts, first


def pool_by_file(
    values: np.ndarray, paths: np.ndarray, how: str = "mean"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One feature row per file from its crop rows: ``mean`` or ``mean_std`` (mean, then std).

    Returns ``(files, features, first_row)`` as :func:`aggregate_by_file` does; the
    standard deviation is the population one (0 for a file with one row).
    """
    files, means, first = aggregate_by_file(values, paths)
    if how == "mean":
        return files, means.astype(np.float32), first
    if how != "mean_std":
        raise ValueError(f"unknown pooling {how!r}; expected 'mean' or 'mean_std'")
    _, squares, _ = aggregate_by_file(np.square(np.asarray(values, dtype=np.float64)), paths)
    std = np.sqrt(np.maximum(squares - np.square(means), 0.0))
    return files, np.concatenate([means, std], axis=1).astype(np.float32), first


def level_metrics(targets: np.ndarray, probs: np.ndarray, multilabel: bool) -> dict[str, float]:
    """The metrics of one level (rows already at that level)."""
    return (multilabel_metrics if multilabel else single_label_metrics)(targets, probs)


def compute_metrics(
    probs: np.ndarray, targets: np.ndarray, paths: np.ndarray, multilabel: bool
) -> dict[str, dict[str, float]]:
    """Crop-level and file-level metrics of one set of predictions."""
    fn = multilabel_metrics if multilabel else single_label_metrics
    _, file_probs, first = aggregate_by_file(probs, paths)
    return {"crop": fn(targets, probs), "file": fn(targets[first], file_probs)}


def primary_metric(multilabel: bool) -> str:
    """The headline number: accuracy (Bajorath et al. 2021) or tag-wise PR-AUC (Spijkervet &
    Burgoyne 2021, §4.4).
    """
    return "pr_auc_tag" if multilabel else "accuracy"
