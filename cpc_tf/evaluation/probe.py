"""The downstream classifier trained on frozen embeddings.

* ``logistic`` (the default): an L2-regularised logistic regression (scikit-learn,
  L-BFGS) trained to convergence on standardised features; its inverse strength C is
  chosen by cross-validation on the training files only (folds by file, so crops of
  one file never sit on both sides). A probe that has not converged measures the
  optimiser, not the representation, and distorts differences between them.
* ``linear`` (Bajorath et al. 2021, §2.3.1): Dropout between input and a softmax Dense layer,
  trained with Adam for 10 epochs at learning rate 1e-4 and batch 32 (Table 5).
* ``mlp`` (Spijkervet & Burgoyne 2021, §3.6): one hidden ReLU layer before the same output.
* Multi-label data (any ';' in the labels) gets sigmoid outputs and binary
  cross-entropy, as in CLMR's MagnaTagATune evaluation (Spijkervet & Burgoyne 2021, §3.6).
* Optional weight decay (CLMR: 1e-6; applied decoupled, with AdamW) and early stopping
  with a patience (CLMR: 5) on a validation slice made of whole training files, so the
  slice never shares a file with the rest of the training data. The best weights are
  restored.
* Features are standardised with the mean and standard deviation of the training rows.
* :func:`class_balanced_subset` draws the label subsets of the data-efficiency study
  (Spijkervet & Burgoyne 2021, §4.4): a fraction of the training files per class, at least one per
  class.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cpc_tf.config import EvalConfig
from cpc_tf.errors import ConfigError
from cpc_tf.evaluation.embeddings import has_tags, split_tags
from cpc_tf.evaluation.splits import round_half_up

if TYPE_CHECKING:  # pragma: no cover
    import keras


@dataclass
class ProbeResult:
    """Test-set probabilities and the per-epoch training curves."""

    probs: np.ndarray
    history: dict[str, list[float]]
    monitor: str  # what the val_* curves were measured on: "validation" or "test"
    epochs_run: int
    y_test: np.ndarray
    multilabel: bool
    classes: list[str] | None = None  # set when the labels were given as strings
    c: float | None = None  # the logistic probe's chosen inverse regularisation strength

    @property
    def accuracy(self) -> float:
        """Crop-level accuracy of the argmax (single-label); NaN for multi-label data."""
        if self.multilabel or len(self.y_test) == 0:
            return float("nan")
        return float(np.mean(self.probs.argmax(axis=1) == self.y_test))


@dataclass
class Standardizer:
    """Per-feature standardisation fitted on training rows only."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        """Mean and standard deviation of `x`; constant features keep scale 1."""
        x = np.asarray(x, dtype=np.float64)
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardised float32 copy of `x`."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)


def build_probe(
    input_dim: int,
    n_classes: int,
    *,
    classifier: str = "linear",
    hidden: int = 512,
    dropout: float = 0.1,
    multilabel: bool = False,
    seed: int = 0,
) -> keras.Model:
    """Linear: Dropout -> Dense(softmax|sigmoid). MLP: Dense(hidden, relu) -> Dropout -> Dense."""
    import keras

    if classifier not in ("linear", "mlp"):
        raise ConfigError(f"build_probe: {classifier!r} is not a Keras probe ('linear' or 'mlp')")
    inputs = keras.Input(shape=(input_dim,), name="features")
    h = inputs
    if classifier == "mlp":
        h = keras.layers.Dense(hidden, activation="relu", name="hidden")(h)
    if dropout > 0:
        h = keras.layers.Dropout(dropout, seed=seed, name="dropout")(h)
    outputs = keras.layers.Dense(
        n_classes, activation="sigmoid" if multilabel else "softmax", name="classes"
    )(h)
    return keras.Model(inputs, outputs, name=f"{classifier}_probe")


def _validation_files(files: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """About `fraction` of each class's training files, never a class's last file.

    Classes are the label rows (multi-label: the tag combination). Returns an empty
    array when no class has enough files; early stopping is then skipped.
    """
    keys = [row.tobytes() for row in np.asarray(y).reshape(len(files), -1)]
    by_key: dict[bytes, set[str]] = defaultdict(set)
    for f, k in zip(np.asarray(files).tolist(), keys):
        by_key[k].add(f)
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    for k in sorted(by_key):
        members = sorted(by_key[k])
        n_val = min(len(members) - 1, round_half_up(fraction * len(members)))
        chosen.extend(rng.permutation(members)[:n_val].tolist())
    return np.asarray(sorted(chosen), dtype=str)


def _cv_folds(
    files: np.ndarray, y: np.ndarray, k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to `k` (train, validation) row splits with whole files on one side, stratified when
    possible.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    _, groups = np.unique(files, return_inverse=True)
    k = min(k, int(groups.max()) + 1)
    if k < 2:
        return []
    strat = y if y.ndim == 1 else np.unique(y, axis=0, return_inverse=True)[1].reshape(-1)
    x = np.zeros((len(y), 1))
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "least populated class" notices: the folds still work
            folds = list(
                StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(x, strat, groups)
            )
    except ValueError:  # a class with fewer members than folds (newer scikit-learn refuses)
        folds = []
    if not folds or any(len(te) == 0 or len(tr) == 0 for tr, te in folds):
        folds = list(GroupKFold(k).split(x, strat, groups))
    return folds


def _logistic(c: float, multilabel: bool, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    lr = LogisticRegression(C=c, max_iter=5000, tol=1e-5, random_state=seed)
    return OneVsRestClassifier(lr) if multilabel else lr


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, c: float, multilabel: bool, n_classes: int, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Fit one probe; returns ``predict(x) -> probabilities [n, n_classes]`` over every class."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    if multilabel:
        present = np.flatnonzero(y.min(axis=0) != y.max(axis=0))  # tags with both values here
        constant = y[0] if len(y) else np.zeros(n_classes)
        if present.size == 0:
            return lambda q: np.tile(constant, (len(q), 1)).astype(np.float32)
        model = _logistic(c, True, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y[:, present])

        def predict_tags(q: np.ndarray) -> np.ndarray:
            out = np.tile(constant, (len(q), 1)).astype(np.float32)
            out[:, present] = model.predict_proba(q)
            return out

        return predict_tags
    seen = np.unique(y)
    if seen.size < 2:  # one class in this training set: predict it
        onehot = np.zeros(n_classes, np.float32)
        onehot[seen[0]] = 1.0
        return lambda q: np.tile(onehot, (len(q), 1))
    model = _logistic(c, False, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)

    def predict(q: np.ndarray) -> np.ndarray:
        out = np.zeros((len(q), n_classes), np.float32)
        out[:, model.classes_] = model.predict_proba(q)
        return out

    return predict


def _score(y: np.ndarray, probs: np.ndarray, multilabel: bool) -> tuple[float, float]:
    """Validation (score, log-loss) that picks C.

    The score is the accuracy (single-label) or the negative binary log-loss over the
    tags (multi-label: a ranking metric such as PR-AUC cannot tell a calibrated probe
    from an over-regularised one). The log-loss breaks ties.
    """
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    if multilabel:
        loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        return -loss, loss
    loss = float(-np.mean(np.log(p[np.arange(len(y)), y])))
    return float(np.mean(probs.argmax(axis=1) == y)), loss


def choose_c(
    x: np.ndarray,
    y: np.ndarray,
    files: np.ndarray,
    cfg: EvalConfig,
    n_classes: int,
    multilabel: bool,
    seed: int,
) -> float:
    """The C of ``eval.logistic_c`` with the best cross-validated score on the training rows.

    Folds are made of whole files (``eval.logistic_folds``, stratified by class). Among
    equal scores the lower validation log-loss wins. With fewer than two files per fold
    the middle of the grid is taken.
    """
    grid = sorted(float(c) for c in cfg.logistic_c)
    folds = _cv_folds(np.asarray(files), y, cfg.logistic_folds, seed)
    if not folds or len(grid) == 1:
        return grid[len(grid) // 2]
    scored = []
    for c in grid:
        runs = [
            _score(
                y[te],
                _fit_logistic(x[tr], y[tr], c, multilabel, n_classes, seed)(x[te]),
                multilabel,
            )
            for tr, te in folds
        ]
        scored.append(
            (float(np.mean([r[0] for r in runs])), -float(np.mean([r[1] for r in runs])), c)
        )
    return max(scored)[2]


def train_logistic(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    cfg: EvalConfig,
    *,
    n_classes: int,
    multilabel: bool,
    seed: int,
    train_files: np.ndarray | None = None,
    c: float | None = None,
) -> tuple[np.ndarray, float]:
    """Standardise (training statistics), choose C unless given, fit, predict the test rows.

    Returns the test probabilities ``[n_test, n_classes]`` and the C used.
    """
    scaler = Standardizer.fit(x_train)
    xtr, xte = scaler.transform(x_train), scaler.transform(x_test)
    files = np.asarray(train_files) if train_files is not None else np.arange(len(xtr)).astype(str)
    if c is None:
        c = choose_c(xtr, y_train, files, cfg, n_classes, multilabel, seed)
    predict = _fit_logistic(xtr, y_train, c, multilabel, n_classes, seed)
    probs = predict(xte) if len(xte) else np.zeros((0, n_classes), np.float32)
    return probs, c


def train_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    cfg: EvalConfig,
    *,
    n_classes: int | None = None,
    multilabel: bool | None = None,
    seed: int | None = None,
    train_files: np.ndarray | None = None,
    validation_fraction: float = 0.1,
    c: float | None = None,
) -> ProbeResult:
    """Fit the probe on standardised training features and predict the test rows.

    `y_*` are class indices (single-label) or multi-hot rows (multi-label), with
    `n_classes` and `multilabel` given; or label strings, which are encoded here (tags
    joined by ';' make the task multi-label) and whose class order is returned in
    ``ProbeResult.classes``. `seed` defaults to ``cfg.seed``. Without
    early stopping the test rows are passed as Keras validation data purely to draw
    curves (Bajorath et al. 2021, §2.3.2 compares train and test loss); they never choose weights.
    With ``cfg.early_stopping_patience > 0`` a class-stratified slice of whole training
    files (`train_files` gives each row's file; about `validation_fraction` of each
    class, never a class's last file) is held out instead and monitors ``val_loss``;
    when no class has enough files for that, the probe trains without early stopping
    and ``monitor`` stays "test".

    With ``cfg.classifier == "logistic"`` the probe is :func:`train_logistic` (``c``
    skips the search); it has no curves and ``monitor`` is "cross-validation".
    """
    from cpc_tf.evaluation.metrics import class_names, encode_labels

    seed = cfg.seed if seed is None else seed
    ytr, yte = np.asarray(y_train), np.asarray(y_test)
    classes = None
    if ytr.dtype.kind in "USO":
        all_labels = np.concatenate([ytr.astype(str), yte.astype(str)])
        if multilabel is None:
            multilabel = has_tags(all_labels)
        classes = class_names(all_labels, multilabel)
        ytr, yte = encode_labels(ytr, classes, multilabel), encode_labels(yte, classes, multilabel)
        n_classes = len(classes)
    if n_classes is None or multilabel is None:
        raise ValueError("train_probe: give n_classes and multilabel with encoded labels")

    if cfg.classifier == "logistic":
        probs, used = train_logistic(
            np.asarray(x_train),
            ytr,
            np.asarray(x_test),
            cfg,
            n_classes=n_classes,
            multilabel=multilabel,
            seed=seed,
            train_files=train_files,
            c=c,
        )
        return ProbeResult(probs, {}, "cross-validation", 0, yte, multilabel, classes, used)

    import keras

    keras.utils.set_random_seed(seed)
    scaler = Standardizer.fit(x_train)
    xtr, xte = scaler.transform(x_train), scaler.transform(x_test)

    callbacks = []
    monitor = "test"
    val_data = (xte, yte) if len(xte) else None
    if cfg.early_stopping_patience > 0:
        files = (
            np.asarray(train_files) if train_files is not None else np.arange(len(xtr)).astype(str)
        )
        val_files = _validation_files(files, ytr, validation_fraction, seed)
        if val_files.size:
            is_val = np.isin(files, val_files)
            val_data = (xtr[is_val], ytr[is_val])
            xtr, ytr = xtr[~is_val], ytr[~is_val]
            monitor = "validation"
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss",
                    patience=cfg.early_stopping_patience,
                    restore_best_weights=True,
                )
            )

    model = build_probe(
        xtr.shape[1],
        n_classes,
        classifier=cfg.classifier,
        hidden=cfg.mlp_hidden,
        dropout=cfg.probe_dropout,
        multilabel=multilabel,
        seed=seed,
    )
    if cfg.probe_weight_decay > 0:
        opt = keras.optimizers.AdamW(cfg.probe_learning_rate, weight_decay=cfg.probe_weight_decay)
    else:
        opt = keras.optimizers.Adam(cfg.probe_learning_rate)
    if multilabel:
        loss = "binary_crossentropy"
        metrics = [
            keras.metrics.AUC(curve="PR", multi_label=True, num_labels=n_classes, name="pr_auc")
        ]
    else:
        loss = "sparse_categorical_crossentropy"
        metrics = ["accuracy"]
    model.compile(optimizer=opt, loss=loss, metrics=metrics, steps_per_execution=16)
    hist = model.fit(
        xtr,
        ytr,
        epochs=cfg.probe_epochs,
        batch_size=cfg.probe_batch_size,
        shuffle=True,
        validation_data=val_data,
        callbacks=callbacks,
        verbose=0,
    )
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    probs = (
        np.asarray(model.predict(xte, batch_size=1024, verbose=0))
        if len(xte)
        else np.zeros((0, n_classes), np.float32)
    )
    return ProbeResult(
        probs, history, monitor, len(history.get("loss", [])), yte, multilabel, classes
    )


def class_balanced_subset(
    files: Sequence[str],
    labels: dict[str, str],
    fraction: float,
    seed: int = 0,
    multilabel: bool = False,
) -> list[str]:
    """A class-balanced `fraction` of the training files, with at least one file per class.

    Single-label: ``max(1, round(fraction * n_c))`` random files of each class c.
    Multi-label: a random ``round(fraction * n)`` of the files, then one more random
    file for each tag the draw missed. ``fraction = 1`` returns every file.
    """
    if (
        not 0.0 < fraction <= 1.0
    ):  # a programming error: eval.label_fractions is checked by config validation
        raise ValueError(f"label fraction must lie in (0, 1], got {fraction}")
    files = sorted(files)
    if fraction >= 1.0:
        return files
    rng = np.random.default_rng(seed)
    if not multilabel:
        by_class: dict[str, list[str]] = defaultdict(list)
        for f in files:
            by_class[labels[f]].append(f)
        chosen: list[str] = []
        for c in sorted(by_class):
            members = by_class[c]
            n = max(1, round_half_up(fraction * len(members)))
            chosen.extend(rng.permutation(members)[:n].tolist())
        return sorted(chosen)
    n = max(1, round_half_up(fraction * len(files)))
    chosen_set = set(rng.permutation(files)[:n].tolist())
    covered = {t for f in chosen_set for t in split_tags(labels[f])}
    by_tag: dict[str, list[str]] = defaultdict(list)
    for f in files:
        for t in split_tags(labels[f]):
            by_tag[t].append(f)
    for t in sorted(by_tag):
        if t not in covered:
            pick = str(rng.choice(by_tag[t]))
            chosen_set.add(pick)
            covered.update(split_tags(labels[pick]))
    return sorted(chosen_set)
