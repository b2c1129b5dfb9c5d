"""`cpc_tf evaluate` end to end: splits, probes, metrics, figures, report.md, metrics.json.

The flow follows Bajorath et al. 2021, §2.3 and Spijkervet & Burgoyne 2021, §3.6 / §4.4:

1. load and check the embeddings (and, if given, a separate test set and a baseline --
   the same architecture randomly initialised, Bajorath et al. 2021, §3.2);
2. split BY FILE (optionally by group), see :mod:`cpc_tf.evaluation.splits`;
3. for every split and every probe seed: optionally reduce with the Table 4
   autoencoder fitted on the training rows, train the probe (Table 5), predict the
   test crops, score crops and files (chunk probabilities averaged per file);
4. repeat step 3 on class-balanced label subsets for the data-efficiency curve; the
   autoencoder, being unsupervised, still sees every training embedding;
5. the baseline goes through exactly the same splits (files are matched by path) and
   the same seeds;
6. write the figures, ``metrics.json`` and ``report.md`` into the report folder, each
   atomically.

Headline numbers are mean ± standard deviation over every (split, seed) run: over the
seeds for a hold-out split, over folds × seeds for K-fold.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cpc_tf.config import EvalConfig
from cpc_tf.config.validate import validate_eval
from cpc_tf.errors import ConfigError, DataError
from cpc_tf.evaluation.embeddings import EmbeddingSet, atomic_write_text, load_embeddings
from cpc_tf.evaluation.figures import write_figures
from cpc_tf.evaluation.metrics import (
    class_names,
    compute_metrics,
    encode_labels,
    level_metrics,
    pool_by_file,
)
from cpc_tf.evaluation.report_dir import check_report_folder, staged_report
from cpc_tf.evaluation.report_md import render_markdown
from cpc_tf.evaluation.results import _finite_or_none, _result_dict, compare_sources, spread
from cpc_tf.evaluation.sources import (
    Source,
    baseline_name,
    find_run_file,
    rows_of,
)
from cpc_tf.evaluation.splits import (
    SplitPlan,
    class_coverage_warnings,
    file_groups,
    file_labels,
    holdout_split,
    kfold_splits,
    parse_group_by,
    rows_in,
    separate_test_split,
)

__all__ = ["baseline_name", "compare_sources", "evaluate", "spread"]


# ----------------------------------------------------------- split plan
def _make_plan(
    model: EmbeddingSet,
    test: EmbeddingSet | None,
    cfg: EvalConfig,
    folds: int | None,
    test_fraction: float | None,
    group_by: str | None,
    multilabel: bool,
) -> SplitPlan:
    labels_train = file_labels(model.paths, model.labels)
    pattern = parse_group_by(group_by) if group_by else None
    groups, notes = file_groups(labels_train, pattern) if pattern else (None, [])
    if test is not None:
        labels_test = file_labels(test.paths, test.labels)
        groups_test, notes_test = file_groups(labels_test, pattern) if pattern else (None, [])
        plan = separate_test_split(labels_train, labels_test, groups, groups_test)
        plan.warnings = notes + notes_test + plan.warnings
        plan.warnings.extend(
            class_coverage_warnings(plan.splits[0], labels_train, labels_test, multilabel)
        )
        return plan
    k = folds if folds is not None else (cfg.folds if test_fraction is None else 0)
    files = sorted(labels_train)
    if k:
        plan = kfold_splits(files, labels_train, k, cfg.seed, groups, multilabel)
    else:
        frac = test_fraction if test_fraction is not None else cfg.test_fraction
        plan = holdout_split(files, labels_train, frac, cfg.seed, groups, multilabel)
    plan.warnings = notes + plan.warnings
    return plan


# ------------------------------------------------------------ the probe runs
def _features(
    x_train: np.ndarray, x_test: np.ndarray, cfg: EvalConfig, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Raw features, or the Table 4 bottleneck fitted on the training rows only."""
    if cfg.reduce != "autoencoder":
        return x_train, x_test
    from cpc_tf.evaluation.autoencoder import fit_autoencoder
    from cpc_tf.evaluation.probe import Standardizer

    scaler = Standardizer.fit(x_train)
    ae = fit_autoencoder(
        scaler.transform(x_train),
        units=cfg.autoencoder_units,
        dropout=cfg.autoencoder_dropout,
        epochs=cfg.autoencoder_epochs,
        learning_rate=cfg.probe_learning_rate,
        batch_size=cfg.probe_batch_size,
        seed=seed,
    )
    return ae.reduce(scaler.transform(x_train)), ae.reduce(scaler.transform(x_test))


def _probe_once(
    trs: EmbeddingSet,
    tes: EmbeddingSet,
    cfg: EvalConfig,
    classes: list[str],
    multilabel: bool,
    seed: int,
) -> tuple[dict[str, dict[str, float]], tuple[np.ndarray, np.ndarray], Any]:
    """One probe run on a training and a test set.

    With ``eval.pool`` (mean or mean_std) the file level -- the headline -- probes one
    pooled row per file, and the crop level probes the crop rows (a logistic probe
    reuses the C chosen at file level). With ``pool: none`` the crop rows are probed
    and the file level averages each file's crop probabilities. Returns the metrics,
    the headline ``(targets, probabilities)`` and the headline probe's result.
    """
    from cpc_tf.evaluation.probe import train_probe

    n = len(classes)
    y_tr = encode_labels(trs.labels, classes, multilabel)
    y_te = encode_labels(tes.labels, classes, multilabel)
    if cfg.pool == "none":
        x_tr, x_te = _features(trs.embeddings, tes.embeddings, cfg, seed)
        res = train_probe(
            x_tr,
            y_tr,
            x_te,
            y_te,
            cfg,
            n_classes=n,
            multilabel=multilabel,
            seed=seed,
            train_files=trs.paths,
        )
        return compute_metrics(res.probs, y_te, tes.paths, multilabel), (y_te, res.probs), res
    files_tr, pooled_tr, first_tr = pool_by_file(trs.embeddings, trs.paths, cfg.pool)
    files_te, pooled_te, first_te = pool_by_file(tes.embeddings, tes.paths, cfg.pool)
    x_tr, x_te = _features(pooled_tr, pooled_te, cfg, seed)
    res = train_probe(
        x_tr,
        y_tr[first_tr],
        x_te,
        y_te[first_te],
        cfg,
        n_classes=n,
        multilabel=multilabel,
        seed=seed,
        train_files=files_tr,
    )
    file_level = level_metrics(y_te[first_te], res.probs, multilabel)
    if len(trs) == len(files_tr) and len(tes) == len(
        files_te
    ):  # one row per file: the levels agree
        crop_level = file_level
    else:
        xc_tr, xc_te = _features(trs.embeddings, tes.embeddings, cfg, seed)
        crop = train_probe(
            xc_tr,
            y_tr,
            xc_te,
            y_te,
            cfg,
            n_classes=n,
            multilabel=multilabel,
            seed=seed,
            train_files=trs.paths,
            c=res.c,
        )
        crop_level = level_metrics(y_te, crop.probs, multilabel)
    return {"crop": crop_level, "file": file_level}, (y_te[first_te], res.probs), res


def _run_source(
    source: Source,
    plan: SplitPlan,
    classes: list[str],
    multilabel: bool,
    cfg: EvalConfig,
    seeds: list[int],
    fractions: list[float],
    labels_train: dict[str, str],
    warnings: list[str],
    log: Callable[[str], None],
) -> None:
    from cpc_tf.evaluation.probe import class_balanced_subset

    separate = plan.kind == "test-set"
    for s_i, split in enumerate(plan.splits):
        tr, te = rows_of(source, split, separate)
        if not tr.any() or not te.any():
            warnings.append(
                f"{source.name}: {split.name} has no {'training' if not tr.any() else 'test'} "
                "rows in this file; skipped"
            )
            continue
        trs, tes = source.train_set.subset(tr), source.test_set.subset(te)
        for seed_i, seed in enumerate(seeds):
            log(f"{source.name}: {split.name}, seed {seed}")
            metrics, (y_true, probs), res = _probe_once(trs, tes, cfg, classes, multilabel, seed)
            source.runs.append(
                {
                    "split": split.name,
                    "seed": seed,
                    "epochs": res.epochs_run,
                    "c": res.c,
                    "train_files": int(np.unique(trs.paths).size),
                    "test_files": int(np.unique(tes.paths).size),
                    "metrics": metrics,
                }
            )
            if seed_i == 0 and not multilabel:
                source.pooled_true.append(y_true)
                source.pooled_pred.append(probs.argmax(axis=1))
            if s_i == 0 and seed_i == 0:
                source.curves, source.curve_monitor = res.history, res.monitor
            for frac in fractions:
                if frac >= 1.0:
                    source.fraction_runs.setdefault(frac, []).append(source.runs[-1])
                    continue
                chosen = class_balanced_subset(
                    sorted(split.train_files), labels_train, frac, seed, multilabel
                )
                sub = rows_in(trs.paths, frozenset(chosen))
                if not sub.any():
                    continue
                sub_metrics, _, _ = _probe_once(
                    trs.subset(sub), tes, cfg, classes, multilabel, seed
                )
                source.fraction_runs.setdefault(frac, []).append(
                    {
                        "split": split.name,
                        "seed": seed,
                        "train_files": len(chosen),
                        "metrics": sub_metrics,
                    }
                )


# ------------------------------------------------------------------- main
def evaluate(
    emb_path: str | os.PathLike[str],
    cfg: EvalConfig,
    out_dir: str | os.PathLike[str],
    test_path: str | os.PathLike[str] | None = None,
    folds: int | None = None,
    test_fraction: float | None = None,
    group_by: str | None = None,
    baseline_path: str | os.PathLike[str] | None = None,
    label_fractions: Sequence[float] | None = None,
    seeds: int | None = None,
    progress: Callable[[str], None] | None = None,
    baselines: Sequence[tuple[str, str, str | None]] = (),
    notes: Sequence[str] = (),
    force: bool = False,
) -> dict[str, Any]:
    """Evaluate an embeddings file against its baselines and write the report folder.

    Baselines are representations of the same files compared row by row with the model:
    `baseline_path` (one file, named after its content), and `baselines`, each
    ``(name, path, test_path)`` where ``test_path`` holds the baseline's test side when
    the evaluation has a separate test set (else None: ``path`` holds both sides).
    Typical rows: the same architecture at random init, and MFCC statistics.

    Split choice: `test_path`, else `folds`, else `test_fraction`, else ``cfg.folds``
    (when > 0), else ``cfg.test_fraction``. `label_fractions` and `seeds` default to
    ``cfg.label_fractions`` and ``cfg.seeds``. Probe seeds are ``cfg.seed + i``; the
    split uses ``cfg.seed``. Returns the dictionary written to ``metrics.json``.

    The report folder is replaced as a whole when everything is written (see
    :mod:`cpc_tf.evaluation.report_dir`); a folder holding files that are not a previous
    report's is refused unless `force`.
    """
    log = progress or (lambda _msg: None)
    emb_path, out_dir = os.fspath(emb_path), os.fspath(out_dir)
    if sum(x is not None for x in (test_path, folds, test_fraction)) > 1:
        raise ConfigError("give at most one of --test, --folds and --test-fraction")
    if folds is not None and folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if test_fraction is not None and not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"--test-fraction must lie in (0, 1), got {test_fraction}")
    fractions = sorted(
        set(float(f) for f in (cfg.label_fractions if label_fractions is None else label_fractions))
    )
    validate_eval(
        dataclasses.replace(cfg, label_fractions=fractions)
    )  # the argument overrides the config
    n_seeds = cfg.seeds if seeds is None else int(seeds)
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {n_seeds}")
    seed_list = [cfg.seed + i for i in range(n_seeds)]

    check_report_folder(out_dir, force)
    log(f"loading {emb_path}")
    model = load_embeddings(emb_path)
    test = load_embeddings(test_path) if test_path else None
    entries = ([(None, os.fspath(baseline_path), None)] if baseline_path else []) + [
        (name, os.fspath(p), os.fspath(t) if t else None) for name, p, t in baselines
    ]
    loaded = []
    for name, path, tpath in entries:
        train_side = load_embeddings(path)
        test_side = load_embeddings(tpath) if tpath else train_side
        loaded.append((name or baseline_name(train_side), path, train_side, test_side))
    warnings: list[str] = list(model.warnings) + (test.warnings if test else [])
    for _, _, train_side, test_side in loaded:
        warnings += train_side.warnings + (
            test_side.warnings if test_side is not train_side else []
        )
    if test is not None and test.dim != model.dim:
        raise DataError(
            f"--test embeddings have dimension {test.dim}, the training embeddings {model.dim}"
        )

    all_sets = [s for s in (model, test) if s is not None] + [b[2] for b in loaded]
    multilabel = any(s.is_multilabel for s in all_sets)
    classes = class_names(np.concatenate([s.labels for s in all_sets]), multilabel)
    if len(classes) < 2:
        raise DataError(
            f"only one class ({classes[0]!r}) in the labels; a classifier needs at least two"
        )
    labels_train = file_labels(model.paths, model.labels)

    plan = _make_plan(model, test, cfg, folds, test_fraction, group_by, multilabel)
    warnings.extend(plan.warnings)
    sources = [Source("model", emb_path, model, test if test is not None else model)]
    split_files = set(labels_train) | (set(test.paths.tolist()) if test is not None else set())
    for name, path, train_side, test_side in loaded:
        while name in {s.name for s in sources}:
            name += "'"
        sources.append(Source(name, path, train_side, test_side))
        missing = len(split_files - set(train_side.paths.tolist()) - set(test_side.paths.tolist()))
        if missing:
            warnings.append(f"{name}: {missing} file(s) of the evaluation are missing from {path}")

    for src in sources:
        _run_source(
            src, plan, classes, multilabel, cfg, seed_list, fractions, labels_train, warnings, log
        )
    if not sources[0].runs:
        raise DataError("no split could be evaluated (every split lacked training or test rows)")
    sources = [s for s in sources if s.runs]

    notes = list(notes)
    config_text = model.config_text()
    if not config_text:
        cfg_file = find_run_file(model.run, emb_path, "config.yaml")
        if cfg_file:
            with open(cfg_file, encoding="utf-8", errors="replace") as fh:
                config_text = fh.read()
    with staged_report(out_dir, force) as stage:
        figures = write_figures(
            sources, plan, classes, multilabel, cfg, fractions, stage, notes, log
        )
        result = _result_dict(
            sources, plan, classes, multilabel, cfg, seed_list, fractions, figures, warnings, notes
        )
        atomic_write_text(
            os.path.join(stage, "metrics.json"),
            json.dumps(_finite_or_none(result), indent=2, allow_nan=False) + "\n",
        )
        atomic_write_text(os.path.join(stage, "report.md"), render_markdown(result, config_text))
    log(f"wrote {os.path.join(out_dir, 'report.md')}")
    return result
