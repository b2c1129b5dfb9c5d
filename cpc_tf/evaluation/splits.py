r"""Train/test splits made BY FILE, optionally by group, never by crop.

Seed 004 §2.3 cuts several 4 s crops from every file; two crops of one file are nearly
the same sound, so a crop-level split would leak the test set into training. Every
split here assigns whole files (or, with ``--group-by regex:PATTERN``, whole groups of
files such as one artist, speaker or source recording) to one side.

Three kinds of split:

* **hold-out** (``--test-fraction F``): per class, ``round(F * n)`` of the class's
  files (groups) go to the test side, at least one and never all of them. Documented
  degradation: a class with a single file (group) stays in training and is not tested,
  with a warning. For multi-label data the stratification key is the whole tag
  combination; combinations seen on a single file are pooled and split at F.
* **K-fold** (``--folds K``): scikit-learn's ``StratifiedGroupKFold`` on files (each
  file its own group unless ``--group-by`` is given). When the number of groups equals
  K, each group is one fold, in natural order of the group names: this reproduces
  official folds such as ESC-50's ``{fold}-{id}-{take}-{class}.ogg`` with
  ``--group-by 'regex:^(\d)-' --folds 5``.
* **separate test set** (``--test FILE.npz``): all of the main file trains, all of the
  other tests. Paths (or groups) present in both only raise a warning, because two
  audio folders can hold different files under the same relative name.
"""

from __future__ import annotations

import os
import re
import warnings as pywarnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cpc_tf.errors import ConfigError, DataError
from cpc_tf.evaluation.embeddings import has_tags, natural_key, split_tags


@dataclass(frozen=True)
class Split:
    """One train/test assignment of files (paths)."""

    name: str
    train_files: frozenset[str]
    test_files: frozenset[str]
    test_groups: tuple[str, ...] = ()


@dataclass
class SplitPlan:
    """Every split of one evaluation, with what was degraded on the way."""

    kind: str  # "holdout" | "folds" | "test-set"
    description: str
    splits: list[Split]
    groups: dict[str, str] | None = None
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ groups
def parse_group_by(spec: str) -> re.Pattern[str]:
    """Compile ``regex:PATTERN``; mistakes raise :class:`ConfigError`."""
    if not spec.startswith("regex:"):
        raise ConfigError(f"--group-by {spec!r}: expected regex:PATTERN, e.g. 'regex:^(\\d)-'")
    pattern = spec[len("regex:") :]
    if not pattern:
        raise ConfigError("--group-by regex: needs a pattern after 'regex:'")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--group-by {spec!r}: invalid regular expression ({exc})") from None


def file_groups(files: Iterable[str], pattern: re.Pattern[str]) -> tuple[dict[str, str], list[str]]:
    r"""Map each file to its group: the pattern's first capture group, else its whole match.

    The pattern is searched in the file name first, then in the relative path (so
    ``^(\d)-`` works on ESC-50 names and ``^([^/]+)/`` groups by folder). A file that
    matches neither is its own group (safe: a file is never split) and is counted in a
    warning; when no file matches at all, that is an error.
    """
    files = list(files)
    groups: dict[str, str] = {}
    unmatched: list[str] = []
    for f in files:
        m = pattern.search(os.path.basename(f)) or pattern.search(f)
        if m is None:
            unmatched.append(f)
            groups[f] = f"<file:{f}>"
        else:
            groups[f] = m.group(1) if pattern.groups and m.group(1) is not None else m.group(0)
    if files and len(unmatched) == len(files):
        raise DataError(
            f"--group-by regex:{pattern.pattern}: no file name matches (e.g. {files[0]!r})"
        )
    notes = []
    if unmatched:
        notes.append(
            f"--group-by: {len(unmatched)} file(s) match no group (e.g. {unmatched[0]!r}); "
            "each is kept as its own group"
        )
    return groups, notes


# ---------------------------------------------------------------- helpers
def file_labels(paths: np.ndarray, labels: np.ndarray) -> dict[str, str]:
    """One label string per file (validated as constant per file on load)."""
    out: dict[str, str] = {}
    for p, lab in zip(paths.tolist(), labels.tolist()):
        out.setdefault(p, lab)
    return out


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's round() sends 2.5 to 2)."""
    return int(np.floor(x + 0.5))


def _units(
    files: Sequence[str], labels: dict[str, str], groups: dict[str, str] | None
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Units of splitting (groups, or single files) and each unit's stratification key."""
    members: dict[str, list[str]] = defaultdict(list)
    for f in files:
        members[groups[f] if groups else f].append(f)
    key = {u: _majority(labels[f] for f in fs) for u, fs in members.items()}
    return dict(members), key


def _majority(values: Iterable[str]) -> str:
    """The most frequent value; ties go to the alphabetically first."""
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))


def _unit_word(groups: dict[str, str] | None) -> str:
    return "group" if groups else "file"


def class_coverage_warnings(
    split: Split, labels_train: dict[str, str], labels_test: dict[str, str], multilabel: bool
) -> list[str]:
    """Warn about classes (tags) that the test side has and the training side lacks."""

    def classes(files: Iterable[str], labels: dict[str, str]) -> set[str]:
        out: set[str] = set()
        for f in files:
            out.update(split_tags(labels[f]) if multilabel else [labels[f]])
        return out

    seen = classes(split.train_files, labels_train)
    unseen = sorted(classes(split.test_files, labels_test) - seen)
    if not unseen:
        return []
    shown = ", ".join(repr(c) for c in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
    return [
        f"{split.name}: {len(unseen)} class(es) in the test side never occur in training "
        f"({shown}); they cannot be predicted and count as errors"
    ]


# ----------------------------------------------------------------- splits
def holdout_split(
    files: Sequence[str],
    labels: dict[str, str],
    fraction: float,
    seed: int = 0,
    groups: dict[str, str] | None = None,
    multilabel: bool = False,
) -> SplitPlan:
    """Stratified hold-out of about `fraction` of the files (groups) per class."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"--test-fraction must lie in (0, 1), got {fraction}")
    members, key = _units(files, labels, groups)
    word = _unit_word(groups)
    by_key: dict[str, list[str]] = defaultdict(list)
    for u in sorted(members):
        by_key[key[u]].append(u)
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    test_units: list[str] = []
    pooled: list[str] = []
    single: list[str] = []
    for k in sorted(by_key):
        units = list(by_key[k])
        rng.shuffle(units)
        if len(units) == 1:
            if multilabel:
                pooled.append(units[0])
            else:
                single.append(k)
            continue
        n_test = min(len(units) - 1, max(1, round_half_up(fraction * len(units))))
        test_units.extend(units[:n_test])
    if single:
        shown = ", ".join(repr(c) for c in single[:5]) + (" ..." if len(single) > 5 else "")
        notes.append(
            f"{len(single)} class(es) have a single {word} ({shown}); "
            "they stay in training and are not tested"
        )
    if pooled:
        rng.shuffle(pooled)
        n_test = round_half_up(fraction * len(pooled))
        test_units.extend(pooled[:n_test])
        notes.append(
            f"{len(pooled)} tag combination(s) occur on a single {word}; "
            f"they were pooled and {n_test} went to the test side"
        )
    if not test_units:
        raise DataError(
            f"cannot hold out a test set: no class has two {word}s or more "
            f"({len(members)} {word}s in all)"
        )
    test_set = set(test_units)
    test_files = frozenset(f for u in test_set for f in members[u])
    train_files = frozenset(files) - test_files
    if not train_files:
        raise DataError("the test split left no training files")
    split = Split(
        "holdout",
        train_files,
        test_files,
        tuple(sorted(test_set, key=natural_key)) if groups else (),
    )
    by = f" by {word}" if groups else ""
    desc = (
        f"hold-out of {len(test_files)}/{len(files)} files "
        f"(test fraction {fraction:g}, stratified{by}, seed {seed})"
    )
    plan = SplitPlan("holdout", desc, [split], groups, notes)
    plan.warnings.extend(class_coverage_warnings(split, labels, labels, multilabel))
    assert_disjoint(plan)
    return plan


def kfold_splits(
    files: Sequence[str],
    labels: dict[str, str],
    k: int,
    seed: int = 0,
    groups: dict[str, str] | None = None,
    multilabel: bool = False,
) -> SplitPlan:
    """Stratified (group) K-fold over files: every file is tested exactly once."""
    if k < 2:
        raise ConfigError(f"--folds must be at least 2, got {k}")
    files = sorted(files)
    members, _ = _units(files, labels, groups)
    word = _unit_word(groups)
    if len(members) < k:
        raise DataError(f"cannot make {k} folds from {len(members)} {word}s")
    notes: list[str] = []
    if groups and len(members) == k:
        names = sorted(members, key=natural_key)
        fold_units = [[g] for g in names]
        desc = f"{k} folds, one per group ({', '.join(names)})"
    else:
        fold_units = _stratified_group_folds(files, labels, groups, k, seed, notes)
        by = f" by {word}" if groups else " by file"
        stratified = not any("not stratified" in n or "unstratified" in n for n in notes)
        desc = (
            f"{k}-fold stratified cross-validation{by} (seed {seed})"
            if stratified
            else f"{k}-fold cross-validation{by}, not stratified"
        )
    all_files = frozenset(files)
    splits = []
    for i, units in enumerate(fold_units):
        test_files = frozenset(f for u in units for f in members[u])
        name = f"fold {i + 1}" + (f" (group {units[0]})" if groups and len(units) == 1 else "")
        splits.append(
            Split(
                name,
                all_files - test_files,
                test_files,
                tuple(sorted(units, key=natural_key)) if groups else (),
            )
        )
    plan = SplitPlan("folds", desc, splits, groups, notes)
    for s in splits:
        plan.warnings.extend(class_coverage_warnings(s, labels, labels, multilabel))
    assert_disjoint(plan)
    return plan


def _stratified_group_folds(
    files: list[str],
    labels: dict[str, str],
    groups: dict[str, str] | None,
    k: int,
    seed: int,
    notes: list[str],
) -> list[list[str]]:
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    unit_of = [groups[f] if groups else f for f in files]
    y_codes = np.unique([labels[f] for f in files], return_inverse=True)[1]
    g_names, g_codes = np.unique(unit_of, return_inverse=True)
    x = np.zeros((len(files), 1))
    smallest = min(
        len({u for u, c in zip(unit_of, y_codes) if c == code}) for code in np.unique(y_codes)
    )
    if smallest < k:
        # scikit-learn >= 1.9 refuses to stratify then (earlier versions warned and went on)
        notes.append(
            f"the smallest class has {smallest} {_unit_word(groups)}(s), fewer than the {k} folds; "
            "the folds are not stratified, and some training folds miss a class"
        )
        folds = []
    else:
        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore")
            folds = [
                np.unique(g_codes[test])
                for _, test in StratifiedGroupKFold(
                    n_splits=k, shuffle=True, random_state=seed
                ).split(x, y_codes, g_codes)
            ]
    if not folds:
        folds = [
            np.unique(g_codes[test])
            for _, test in GroupKFold(n_splits=k).split(x, y_codes, g_codes)
        ]
    elif any(f.size == 0 for f in folds):
        notes.append("stratified K-fold left a fold empty; fell back to unstratified group K-fold")
        folds = [
            np.unique(g_codes[test])
            for _, test in GroupKFold(n_splits=k).split(x, y_codes, g_codes)
        ]
    return [[str(g_names[c]) for c in fold] for fold in folds]


def separate_test_split(
    train_files: Iterable[str],
    test_files: Iterable[str],
    groups_train: dict[str, str] | None = None,
    groups_test: dict[str, str] | None = None,
) -> SplitPlan:
    """The main file trains, a separate file tests; overlaps are reported, not repaired."""
    train, test = frozenset(train_files), frozenset(test_files)
    notes: list[str] = []
    both = sorted(train & test)
    if both:
        notes.append(
            f"{len(both)} path(s) occur in both --embeddings and --test (e.g. {both[0]!r}); "
            "if they are the same audio, the test set leaks into training"
        )
    if groups_train is not None and groups_test is not None:
        shared = sorted(set(groups_train.values()) & set(groups_test.values()), key=natural_key)
        if shared:
            notes.append(
                f"{len(shared)} group(s) occur in both --embeddings and --test "
                f"(e.g. {shared[0]!r}); the test set is not group-disjoint"
            )
    split = Split("test set", train, test)
    return SplitPlan("test-set", f"separate test set ({len(test)} files)", [split], None, notes)


def assert_disjoint(plan: SplitPlan) -> None:
    """Internal guard: no file, and no group, on both sides of a split made here."""
    for s in plan.splits:
        if s.train_files & s.test_files:
            raise AssertionError(f"{s.name}: files on both sides of the split")
        if plan.groups:
            gtr = {plan.groups[f] for f in s.train_files}
            gte = {plan.groups[f] for f in s.test_files}
            if gtr & gte:
                raise AssertionError(f"{s.name}: groups on both sides of the split")


def rows_in(paths: np.ndarray, files: frozenset[str]) -> np.ndarray:
    """Boolean mask of the rows whose path is in `files`."""
    return np.isin(paths, np.asarray(sorted(files), dtype=str))


def split_by_file(
    paths: np.ndarray,
    labels: np.ndarray,
    test_fraction: float = 0.2,
    seed: int = 0,
    group_by: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)`` of a stratified hold-out by file (see :func:`holdout_split`).

    A convenience for callers holding plain arrays (one path and one label string per
    row, the label constant per file); warnings of the split are not returned.
    """
    paths, labels = np.asarray(paths).astype(str), np.asarray(labels).astype(str)
    lab = file_labels(paths, labels)
    groups = file_groups(lab, parse_group_by(group_by))[0] if group_by else None
    multilabel = has_tags(list(lab.values()))
    split = holdout_split(sorted(lab), lab, test_fraction, seed, groups, multilabel).splits[0]
    return np.flatnonzero(rows_in(paths, split.train_files)), np.flatnonzero(
        rows_in(paths, split.test_files)
    )
