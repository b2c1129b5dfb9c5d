"""The figures of an evaluation report: confusion matrices, t-SNE, probe curves, pre-training
loss and the data-efficiency curve (matplotlib, Agg), each written into the report folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from cpc_tf.config import EvalConfig
from cpc_tf.evaluation import plots
from cpc_tf.evaluation.embeddings import split_tags
from cpc_tf.evaluation.metrics import normalized_confusion, primary_metric
from cpc_tf.evaluation.sources import Source, find_run_file, rows_of, summarize
from cpc_tf.evaluation.splits import SplitPlan


def _plot_label(label: str, multilabel: bool) -> str:
    return (split_tags(label) or [label])[0] if multilabel else label


def write_figures(
    sources: list[Source],
    plan: SplitPlan,
    classes: list[str],
    multilabel: bool,
    cfg: EvalConfig,
    fractions: list[float],
    out_dir: str,
    notes: list[str],
    log: Callable[[str], None],
) -> dict[str, str]:
    """Write the report's figures into `out_dir`; return them by name (notes explain gaps)."""
    figures: dict[str, str] = {}
    model = sources[0]

    def path(name: str) -> str:
        return os.path.join(out_dir, name)

    for src in sources:
        if src.pooled_true:
            mat, _, _ = normalized_confusion(
                np.concatenate(src.pooled_true), np.concatenate(src.pooled_pred), len(classes)
            )
            name = "confusion_matrix.png" if src is model else f"confusion_matrix_{src.name}.png"
            plots.plot_confusion(
                mat,
                classes,
                path(name),
                title=f"{src.name}: confusion matrix (test crops, "
                f"{'pooled over folds, ' if plan.kind == 'folds' else ''}first seed)",
            )
            figures[name] = name
    if multilabel:
        notes.append("no confusion matrix: the labels are multi-label tags")

    split = plan.splits[0]
    tr, te = rows_of(model, split, plan.kind == "test-set")
    log(f"t-SNE of up to {cfg.tsne_max_points} train and {cfg.tsne_max_points} test crops")
    xy_tr, xy_te, r_tr, r_te = plots.tsne_embed(
        model.train_set.embeddings[tr], model.test_set.embeddings[te], cfg.tsne_max_points, cfg.seed
    )
    lab_tr = [_plot_label(v, multilabel) for v in model.train_set.labels[tr][r_tr].tolist()]
    lab_te = [_plot_label(v, multilabel) for v in model.test_set.labels[te][r_te].tolist()]
    present = set(lab_tr) | set(lab_te)
    shown = [c for c in classes if c in present]
    plots.plot_tsne_classes(
        xy_tr,
        lab_tr,
        xy_te,
        lab_te,
        shown,
        path("tsne_classes.png"),
        title=f"t-SNE ({split.name}), coloured by {'first tag' if multilabel else 'class'}",
    )
    plots.plot_tsne_train_test(xy_tr, lab_tr, xy_te, lab_te, shown, path("tsne_train_test.png"))
    figures["tsne_classes.png"] = "tsne_classes.png"
    figures["tsne_train_test.png"] = "tsne_train_test.png"
    if plan.kind != "holdout" or len(plan.splits) > 1:
        notes.append(f"t-SNE and probe curves show {split.name} only")

    curves = {s.name: (s.curves, s.curve_monitor) for s in sources if s.curves}
    if curves:
        plots.plot_probe_curves(curves, path("probe_curves.png"))
        figures["probe_curves.png"] = "probe_curves.png"

    hist_file = find_run_file(model.train_set.run, model.path, "history.csv")
    history = plots.read_history_csv(hist_file) if hist_file else {}
    if history and plots.plot_pretrain_loss(
        history,
        path("pretrain_loss.png"),
        title=f"pre-training loss ({model.train_set.model or 'model'})",
    ):
        figures["pretrain_loss.png"] = "pretrain_loss.png"
    else:
        where = model.train_set.run or "(no run recorded in the embeddings file)"
        notes.append(
            f"no pre-training loss plot: no readable history.csv in the run folder {where}"
        )

    if fractions:
        metric = primary_metric(multilabel)
        points = {}
        for s in sources:
            pts = {}
            for f, runs in s.fraction_runs.items():
                stat = summarize([r["metrics"]["crop"][metric] for r in runs])
                if stat["mean"] is not None:
                    pts[f] = (stat["mean"], stat["std"])
            if pts:
                points[s.name] = pts
        if points:
            plots.plot_data_efficiency(
                points, f"{metric} (crop level)", path("data_efficiency.png")
            )
            figures["data_efficiency.png"] = "data_efficiency.png"
    return figures
