"""The representations of one evaluation (the model and its baselines), and their statistics.

Shared by the report's probe runs, its figures and its Markdown.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cpc_tf.evaluation.embeddings import EmbeddingSet
from cpc_tf.evaluation.splits import Split, rows_in

LEVELS = ("crop", "file")


@dataclass
class Source:
    """One representation to evaluate: the model, or a baseline of the same files."""

    name: str
    path: str
    train_set: EmbeddingSet
    test_set: EmbeddingSet
    runs: list[dict[str, Any]] = field(default_factory=list)
    fraction_runs: dict[float, list[dict[str, Any]]] = field(default_factory=dict)
    pooled_true: list[np.ndarray] = field(default_factory=list)
    pooled_pred: list[np.ndarray] = field(default_factory=list)
    curves: dict[str, list[float]] | None = None
    curve_monitor: str = "test"


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Mean and standard deviation (ddof 1; 0 for one value) of the finite values."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return {"mean": None, "std": None, "n": 0, "values": list(values)}
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "n": int(arr.size), "values": list(values)}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Summarize each metric over `runs` (seeds), per level (crop, file)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for level in LEVELS:
        names = list(runs[0]["metrics"][level]) if runs else []
        out[level] = {m: summarize([r["metrics"][level][m] for r in runs]) for m in names}
    return out


def find_run_file(run: str, emb_path: str, name: str) -> str | None:
    """`name` inside the run folder, taken as given or relative to the embeddings file."""
    if not run:
        return None
    candidates = (
        [run]
        if os.path.isabs(run)
        else [run, os.path.join(os.path.dirname(os.path.abspath(emb_path)), run)]
    )
    for folder in candidates:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def baseline_name(emb: EmbeddingSet) -> str:
    """A row name for a baseline file: ``random-init``, a feature name, else ``baseline``."""
    if emb.run == "random-init":
        return "random-init"
    if emb.run.startswith("features:"):
        return emb.run.split(":", 1)[1]
    return "baseline"


def rows_of(source: Source, split: Split, separate_test: bool) -> tuple[np.ndarray, np.ndarray]:
    """Train-row and test-row masks of `source` for `split` (matched by path)."""
    if source.train_set is not source.test_set or not separate_test:
        return rows_in(source.train_set.paths, split.train_files), rows_in(
            source.test_set.paths, split.test_files
        )
    # a baseline with --test: one file holds both sides; ambiguous paths are left out
    ambiguous = split.train_files & split.test_files
    return (
        rows_in(source.train_set.paths, split.train_files - ambiguous),
        rows_in(source.test_set.paths, split.test_files - ambiguous),
    )
