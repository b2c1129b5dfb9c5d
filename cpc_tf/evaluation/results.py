"""The evaluation's result dictionary (what ``metrics.json`` and ``report.md`` are made of).

:func:`_result_dict` gathers every source's runs, confusion matrix and data-efficiency
curve with the split and the settings; :func:`compare_sources` sets the model against each
baseline, a difference counting as real beyond twice the combined :func:`spread`;
:func:`_finite_or_none` makes the dictionary JSON-safe.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cpc_tf.config import EvalConfig
from cpc_tf.evaluation.metrics import normalized_confusion, primary_metric
from cpc_tf.evaluation.sources import Source, aggregate, rows_of, summarize
from cpc_tf.evaluation.splits import SplitPlan


# ------------------------------------------------------------ utilities
def _finite_or_none(x: Any) -> Any:
    """JSON-safe copy: NaN/Inf become null, numpy scalars and arrays become Python."""
    if isinstance(x, dict):
        return {str(k): _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, np.ndarray):
        return _finite_or_none(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ------------------------------------------------------ result dictionary
def _split_counts(plan: SplitPlan, model: Source) -> list[dict[str, Any]]:
    rows = []
    for s in plan.splits:
        tr, te = rows_of(model, s, plan.kind == "test-set")
        rows.append(
            {
                "name": s.name,
                "train_files": int(np.unique(model.train_set.paths[tr]).size),
                "train_crops": int(tr.sum()),
                "test_files": int(np.unique(model.test_set.paths[te]).size),
                "test_crops": int(te.sum()),
                "test_groups": list(s.test_groups),
            }
        )
    return rows


def spread(stat: dict[str, Any], test_files: float | None, binomial: bool) -> float:
    """One standard deviation of a headline number: over the runs (splits × seeds), and,
    for an accuracy, the sampling error of the `test_files` it rests on, sqrt(p(1-p)/n),
    on top.
    """
    sd = float(stat.get("std") or 0.0)
    if binomial and test_files:
        p = float(stat["mean"])
        sd = math.sqrt(sd**2 + p * (1.0 - p) / test_files)
    return sd


def _tested_files(runs: list[dict[str, Any]]) -> float | None:
    """Files behind one seed's headline number: every split's test files (k folds test
    every file once, so the fold-mean accuracy rests on all of them).
    """
    if not runs:
        return None
    seeds = {r.get("seed") for r in runs}
    return sum(r["test_files"] for r in runs) / max(1, len(seeds))


def compare_sources(results: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    """The model against each baseline on the file-level headline metric.

    A difference counts as real ("beyond the spread") when it exceeds twice the
    combined standard deviation of the two numbers (:func:`spread`), else it is
    reported as within the spread.
    """
    model = results["model"]
    m = model["file"].get(metric)
    rows = []
    for name, res in results.items():
        b = res["file"].get(metric)
        if name == "model" or not m or not b or m.get("mean") is None or b.get("mean") is None:
            continue
        binomial = metric == "accuracy"
        n_model, n_base = _tested_files(model["runs"]), _tested_files(res["runs"])
        sigma = math.sqrt(spread(m, n_model, binomial) ** 2 + spread(b, n_base, binomial) ** 2)
        diff = float(m["mean"]) - float(b["mean"])
        rows.append(
            {
                "baseline": name,
                "metric": metric,
                "level": "file",
                "model": m["mean"],
                "value": b["mean"],
                "difference": diff,
                "two_sigma": 2 * sigma,
                "beyond_spread": bool(abs(diff) > 2 * sigma),
            }
        )
    return rows


def _result_dict(
    sources: list[Source],
    plan: SplitPlan,
    classes: list[str],
    multilabel: bool,
    cfg: EvalConfig,
    seeds: list[int],
    fractions: list[float],
    figures: dict[str, str],
    warnings: list[str],
    notes: list[str],
) -> dict[str, Any]:
    model = sources[0]
    results: dict[str, Any] = {}
    confusion: dict[str, Any] = {}
    efficiency: dict[str, Any] = {}
    for s in sources:
        results[s.name] = {
            "path": s.path,
            "model": s.train_set.model,
            "run": s.train_set.run,
            "dim": s.train_set.dim,
            **aggregate(s.runs),
            "runs": s.runs,
        }
        if s.pooled_true:
            m, rows, cols = normalized_confusion(
                np.concatenate(s.pooled_true), np.concatenate(s.pooled_pred), len(classes)
            )
            level = "crop" if cfg.pool == "none" else "file"
            confusion[s.name] = {"level": level, "matrix": m, "row_sums": rows, "col_sums": cols}
        if fractions:
            efficiency[s.name] = {
                str(f): {
                    **aggregate(runs),
                    "train_files": summarize([r["train_files"] for r in runs])["mean"],
                }
                for f, runs in sorted(s.fraction_runs.items())
            }
    return {
        "embeddings": model.path,
        "model": model.train_set.model,
        "run": model.train_set.run,
        "task": "multi-label" if multilabel else "single-label",
        "classes": classes,
        "primary_metric": primary_metric(multilabel),
        "split": {
            "kind": plan.kind,
            "description": plan.description,
            "splits": _split_counts(plan, model),
        },
        "comparison": compare_sources(results, primary_metric(multilabel)),
        "settings": {
            "classifier": cfg.classifier,
            "pool": cfg.pool,
            "logistic_c": cfg.logistic_c,
            "logistic_folds": cfg.logistic_folds,
            "mlp_hidden": cfg.mlp_hidden,
            "reduce": cfg.reduce,
            "probe_epochs": cfg.probe_epochs,
            "probe_learning_rate": cfg.probe_learning_rate,
            "probe_batch_size": cfg.probe_batch_size,
            "probe_dropout": cfg.probe_dropout,
            "probe_weight_decay": cfg.probe_weight_decay,
            "early_stopping_patience": cfg.early_stopping_patience,
            "autoencoder_units": cfg.autoencoder_units,
            "seeds": seeds,
            "split_seed": cfg.seed,
            "label_fractions": fractions,
        },
        "results": results,
        "confusion_matrix": confusion,
        "data_efficiency": efficiency,
        "figures": figures,
        "warnings": warnings,
        "notes": notes,
    }
