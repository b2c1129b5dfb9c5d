"""Figures of the evaluation report, drawn with matplotlib's object API and Agg.

No pyplot is used: each function builds its own :class:`matplotlib.figure.Figure`,
renders it to PNG bytes in memory and writes the file atomically, so nothing touches
matplotlib's global figure manager or backend choice.

* :func:`plot_confusion` -- Bajorath et al. 2021, §2.3.2: rows true, columns predicted, the whole
  matrix sums to 1, with the row sums (class frequencies) and column sums (how often
  each class was predicted) shown beside and below it.
* :func:`tsne_embed`, :func:`plot_tsne_classes`, :func:`plot_tsne_train_test` --
  Bajorath et al. 2021, §2.3: up to N random train and N random test embeddings mapped together by
  t-SNE; one figure coloured by class with a train and a test panel, one with a small
  panel per class showing train against test.
* :func:`plot_probe_curves` (Bajorath et al. 2021, §3.2 / Figure 5), :func:`plot_pretrain_loss`
  (Bajorath et al. 2021, Figure 4, from the run's ``history.csv``) and
  :func:`plot_data_efficiency` (Spijkervet & Burgoyne 2021, §4.4, Figures 4-5).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from cpc_tf.evaluation.embeddings import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

TRAIN_COLOR = "#1f77b4"
TEST_COLOR = "#ff7f0e"


def _integer_epochs(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> str:
    """Render `fig` to PNG with the Agg canvas and write it atomically; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)

    def write(fh: IO[bytes]) -> None:
        fh.write(buf.getvalue())

    atomic_write(path, write)
    return os.fspath(path)


def class_colors(n: int) -> list[Any]:
    """N distinguishable colours (tab10 / tab20, then an evenly sampled 'turbo')."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](x) for x in np.linspace(0.02, 0.98, n)]


# ------------------------------------------------------------- confusion
def plot_confusion(
    matrix: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "Confusion matrix (sums to 1)",
) -> str:
    """Draw a sum-to-1 confusion matrix with its row and column sums."""
    m = np.asarray(matrix, dtype=float)
    n = len(classes)
    rows, cols = m.sum(axis=1), m.sum(axis=0)
    side = min(30.0, max(4.5, 0.55 * (n + 1) + 2.5))
    fig = _new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    vmax = m.max() if m.size and m.max() > 0 else 1.0
    im = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=vmax, extent=(-0.5, n - 0.5, n - 0.5, -0.5))
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of all test crops")
    annotate = n <= 20
    fs = max(5, 10 - n // 4)
    for i in range(n):
        for j in range(n):
            if annotate and m[i, j] > 0:
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:.3f}",
                    ha="center",
                    va="center",
                    fontsize=fs,
                    color="white" if m[i, j] > 0.6 * vmax else "black",
                )
        ax.text(n, i, f"{rows[i]:.3f}", ha="center", va="center", fontsize=fs, color="#333333")
        ax.text(i, n, f"{cols[i]:.3f}", ha="center", va="center", fontsize=fs, color="#333333")
    ax.text(n, n, f"{np.trace(m):.3f}", ha="center", va="center", fontsize=fs, fontweight="bold")
    ax.axvline(n - 0.5, color="grey", lw=0.8)
    ax.axhline(n - 0.5, color="grey", lw=0.8)
    ax.set_xlim(-0.5, n + 0.5)
    ax.set_ylim(n + 0.5, -0.5)
    ax.set_xticks(
        range(n + 1), list(classes) + ["row sum"], rotation=45, ha="right", fontsize=fs + 1
    )
    ax.set_yticks(range(n + 1), list(classes) + ["column sum"], fontsize=fs + 1)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}\n(corner: trace = accuracy)", fontsize=10)
    return save_figure(fig, path)


# ------------------------------------------------------------------ t-SNE
def tsne_embed(
    x_train: np.ndarray,
    x_test: np.ndarray,
    max_points: int = 5000,
    seed: int = 0,
    n_jobs: int = 2,
    max_iter: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Map up to `max_points` random train and test rows to 2-D together (Bajorath et al. 2021,
    §2.3).

    Rows are first reduced to 50 dimensions by PCA (the usual t-SNE preprocessing),
    then embedded by scikit-learn's Barnes-Hut t-SNE. ``max_iter`` defaults to 1000
    for up to 4,000 points and 500 above, which keeps 10,000 points near half a minute
    on two cores. Returns ``(xy_train, xy_test, rows_train, rows_test)`` where
    ``rows_*`` are the chosen row indices.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    r_tr = np.sort(rng.permutation(len(x_train))[:max_points])
    r_te = np.sort(rng.permutation(len(x_test))[:max_points])
    x = np.concatenate([np.asarray(x_train)[r_tr], np.asarray(x_test)[r_te]]).astype(np.float32)
    n = x.shape[0]
    if n < 5:
        xy = np.zeros((n, 2), np.float32)
        return xy[: r_tr.size], xy[r_tr.size :], r_tr, r_te
    n_comp = min(50, x.shape[1], n)
    if x.shape[1] > n_comp:
        x = PCA(n_components=n_comp, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    iters = max_iter or (1000 if n <= 4000 else 500)
    xy = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        max_iter=iters,
        random_state=seed,
        n_jobs=n_jobs,
    ).fit_transform(x)
    return xy[: r_tr.size], xy[r_tr.size :], r_tr, r_te


def plot_tsne_classes(
    xy_train: np.ndarray,
    labels_train: Sequence[str],
    xy_test: np.ndarray,
    labels_test: Sequence[str],
    classes: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "t-SNE of the embeddings, coloured by class",
) -> str:
    """Plot 1 of Bajorath et al. 2021, §2.3: a train panel and a test panel, one colour per
    class.
    """
    colors = dict(zip(classes, class_colors(len(classes))))
    fig = _new_figure(12, 5.8)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, xy, given, name in (
        (axes[0], xy_train, labels_train, "train"),
        (axes[1], xy_test, labels_test, "test"),
    ):
        labs = np.asarray(given)
        for c in classes:
            sel = labs == c
            if sel.any():
                ax.scatter(
                    xy[sel, 0], xy[sel, 1], s=4, alpha=0.6, color=colors[c], label=c, linewidths=0
                )
        ax.set_title(f"{name} ({len(labs)} crops)")
        ax.set_xticks([])
        ax.set_yticks([])
    if len(classes) <= 20:
        axes[1].legend(
            loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=3, fontsize=8, frameon=False
        )
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_tsne_train_test(
    xy_train: np.ndarray,
    labels_train: Sequence[str],
    xy_test: np.ndarray,
    labels_test: Sequence[str],
    classes: Sequence[str],
    path: str | os.PathLike[str],
    max_panels: int = 64,
) -> str:
    """Plot 2 of Bajorath et al. 2021, §2.3: per class, train against test over all points in
    grey.
    """
    shown = list(classes)[:max_panels]
    cols = max(1, math.ceil(math.sqrt(len(shown))))
    rows = max(1, math.ceil(len(shown) / cols))
    fig = _new_figure(2.6 * cols + 0.5, 2.6 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    ltr, lte = np.asarray(labels_train), np.asarray(labels_test)
    everything = (
        np.concatenate([xy_train, xy_test]) if len(xy_train) + len(xy_test) else np.zeros((0, 2))
    )
    for ax, c in zip(axes, shown):
        ax.scatter(everything[:, 0], everything[:, 1], s=1, color="#dddddd", linewidths=0)
        ax.scatter(
            xy_train[ltr == c, 0],
            xy_train[ltr == c, 1],
            s=3,
            color=TRAIN_COLOR,
            alpha=0.7,
            linewidths=0,
            label="train",
        )
        ax.scatter(
            xy_test[lte == c, 0],
            xy_test[lte == c, 1],
            s=3,
            color=TEST_COLOR,
            alpha=0.7,
            linewidths=0,
            label="test",
        )
        ax.set_title(str(c), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    axes[0].legend(loc="upper left", markerscale=3, fontsize=7)
    extra = f" (first {max_panels} of {len(classes)} classes)" if len(classes) > max_panels else ""
    fig.suptitle(f"t-SNE per class: train (blue) vs test (orange){extra}")
    return save_figure(fig, path)


# ----------------------------------------------------------------- curves
def plot_probe_curves(
    curves: Mapping[str, tuple[Mapping[str, Sequence[float]], str]], path: str | os.PathLike[str]
) -> str:
    """Loss and accuracy (or PR-AUC) per epoch; `curves` maps a name to (history, monitor).

    ``monitor`` names what the ``val_*`` series were measured on ("test" or
    "validation"), so a widening gap between the two is read as over-fitting
    (Bajorath et al. 2021, §2.3.2).
    """
    fig = _new_figure(11, 4.2)
    ax_loss, ax_acc = fig.subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    for i, (name, (hist, monitor)) in enumerate(curves.items()):
        ls = styles[i % len(styles)]
        metric = next((k for k in hist if k in ("accuracy", "pr_auc")), None)
        epochs = np.arange(1, len(hist.get("loss", [])) + 1)
        ax_loss.plot(epochs, hist.get("loss", []), ls, color=TRAIN_COLOR, label=f"{name} train")
        if "val_loss" in hist:
            ax_loss.plot(epochs, hist["val_loss"], ls, color=TEST_COLOR, label=f"{name} {monitor}")
        if metric:
            ax_acc.plot(epochs, hist[metric], ls, color=TRAIN_COLOR, label=f"{name} train")
            if f"val_{metric}" in hist:
                ax_acc.plot(
                    epochs, hist[f"val_{metric}"], ls, color=TEST_COLOR, label=f"{name} {monitor}"
                )
            ax_acc.set_ylabel(metric.replace("_", "-"))
    for ax, what in ((ax_loss, "loss"), (ax_acc, "score")):
        _integer_epochs(ax)
        ax.set_xlabel("epoch")
        ax.set_title(f"probe {what}")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    ax_loss.set_ylabel("cross-entropy")
    return save_figure(fig, path)


def read_history_csv(path: str | os.PathLike[str]) -> dict[str, list[float]]:
    """Numeric columns of a Keras CSVLogger file (``epoch`` excluded); {} if unreadable."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    out: dict[str, list[float]] = {}
    for key in rows[0].keys() if rows else []:
        if key is None or key == "epoch":
            continue
        try:
            out[key] = [float(r[key]) for r in rows]
        except (TypeError, ValueError):
            continue
    return out


def plot_pretrain_loss(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    title: str = "pre-training loss",
) -> str | None:
    """Every ``*loss*`` column of a run's history (Bajorath et al. 2021, Figure 4); None when there
    is none.
    """
    keys = [k for k in history if "loss" in k]
    if not keys:
        return None
    fig = _new_figure(7, 4.2)
    ax = fig.add_subplot()
    for k in keys:
        ax.plot(np.arange(1, len(history[k]) + 1), history[k], marker="o", ms=3, label=k)
    _integer_epochs(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_data_efficiency(
    results: Mapping[str, Mapping[float, tuple[float, float]]],
    metric: str,
    path: str | os.PathLike[str],
) -> str:
    """Score against the fraction of training labels (Spijkervet & Burgoyne 2021, §4.4); mean ± std
    bars.
    """
    fig = _new_figure(6.5, 4.2)
    ax = fig.add_subplot()
    for i, (name, points) in enumerate(results.items()):
        fr = sorted(points)
        mean = [points[f][0] for f in fr]
        std = [points[f][1] for f in fr]
        ax.errorbar(
            [100 * f for f in fr],
            mean,
            yerr=std,
            marker="o",
            capsize=3,
            color=TRAIN_COLOR if i == 0 else TEST_COLOR,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel("labelled training files used (%)")
    ax.set_ylabel(metric.replace("_", "-"))
    ax.set_title("data efficiency (class-balanced label subsets)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, path)
