"""Tests of cpc_tf.evaluation: metrics, embeddings files, splits, probe, report, CLI.

Kept fast: tiny synthetic embeddings, few epochs, t-SNE on a few dozen points.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cpc_tf.config import EvalConfig
from cpc_tf.errors import ConfigError, DataError
from cpc_tf.evaluation import metrics as M
from cpc_tf.evaluation.embeddings import load_embeddings, save_embeddings, validate_arrays
from cpc_tf.evaluation.splits import (
    file_groups,
    file_labels,
    holdout_split,
    kfold_splits,
    parse_group_by,
    rows_in,
    separate_test_split,
)

REPO = Path(__file__).resolve().parent.parent
EVAL_DIR = REPO / "cpc_tf" / "evaluation"


# ------------------------------------------------------------------ helpers
def make_arrays(
    n_files: int = 40,
    crops: int = 4,
    n_classes: int = 4,
    dim: int = 16,
    sep: float = 6.0,
    seed: int = 0,
    names: list[str] | None = None,
    labels: list[str] | None = None,
    noise: float = 1.0,
    run: str = "",
) -> dict[str, np.ndarray]:
    """Embeddings with one Gaussian cluster per class (one label string per file)."""
    rng = np.random.default_rng(seed)
    names = names or [f"class{f % n_classes}/file{f:03d}.wav" for f in range(n_files)]
    labels = labels or [f"class{f % n_classes}" for f in range(n_files)]
    tags = sorted({t for lab in labels for t in lab.split(";")})
    centers = {t: rng.normal(size=dim) * sep for t in tags}
    rows, paths, labs, starts, clip = [], [], [], [], []
    for f, (name, lab) in enumerate(zip(names, labels)):
        center = sum(centers[t] for t in lab.split(";"))
        for k in range(crops):
            rows.append(center + rng.normal(size=dim) * noise)
            paths.append(name)
            labs.append(lab)
            starts.append(2.0 * k)
            clip.append(f)
    return {
        "embeddings": np.asarray(rows, np.float32),
        "paths": np.asarray(paths),
        "labels": np.asarray(labs),
        "crop_start": np.asarray(starts, np.float32),
        "clip_index": np.asarray(clip, np.int64),
        "run": np.array(run),
        "model": np.array("toy model"),
    }


def write_npz(path: Path, **kw) -> str:
    save_embeddings(path, **make_arrays(**kw))
    return str(path)


def fast_cfg(**kw) -> EvalConfig:
    base = dict(probe_epochs=3, probe_learning_rate=0.02, tsne_max_points=30, autoencoder_epochs=2)
    base.update(kw)
    return EvalConfig(**base)


def esc_names(per_fold: int = 8, n_classes: int = 4) -> tuple[list[str], list[str]]:
    names, labels = [], []
    for fold in range(1, 6):
        for i in range(per_fold):
            c = i % n_classes
            names.append(f"audio/{fold}-{1000 * fold + i}-A-{c}.ogg")
            labels.append(f"class{c}")
    return names, labels


def assert_not_blank(path: Path) -> None:
    from matplotlib.image import imread

    assert path.is_file(), path
    assert float(np.var(imread(str(path)))) > 0.0, f"{path} is blank"


# ------------------------------------------------------------------ metrics
def test_single_label_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2])
    probs = np.eye(3)[pred]
    out = M.single_label_metrics(y, probs)
    assert out["accuracy"] == pytest.approx(0.8)
    # per-class F1: 2/3 (P=1, R=1/2), 0.8 (P=2/3, R=1), 1
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1.0) / 3)


def test_tagwise_and_clipwise_auc_by_hand():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], float)
    s = np.array([[0.9, 0.2], [0.85, 0.8], [0.6, 0.3], [0.1, 0.5]])
    roc_t, pr_t = M.tagwise_auc(y, s)
    # tag 0 and tag 1: 3 of 4 positive/negative pairs ordered right; AP = (1 + 2/3) / 2
    assert roc_t == pytest.approx(0.75)
    assert pr_t == pytest.approx(5 / 6)
    roc_c, pr_c = M.clipwise_auc(y, s)
    # clip 0: 1 / 1; clip 1: ROC 0, AP 1/2; clip 2: AP 1 (ROC undefined); clip 3 undefined
    assert roc_c == pytest.approx(0.5)
    assert pr_c == pytest.approx((1 + 0.5 + 1) / 3)
    full = M.multilabel_metrics(y, s)
    assert full["roc_auc_tag"] == pytest.approx(0.75) and full["pr_auc_clip"] == pytest.approx(
        5 / 6
    )


def test_auc_undefined_everywhere_is_nan():
    roc, pr = M.tagwise_auc(np.zeros((3, 2)), np.random.default_rng(0).random((3, 2)))
    assert np.isnan(roc) and np.isnan(pr)


def test_confusion_matrix_sums_to_one_with_class_frequencies():
    y = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2])
    m, rows, cols = M.normalized_confusion(y, pred, 3)
    assert m.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(rows, np.bincount(y, minlength=3) / len(y))
    np.testing.assert_allclose(cols, [0.2, 0.6, 0.2])
    assert np.trace(m) == pytest.approx(0.8)


def test_file_level_aggregation_averages_crop_probabilities():
    probs = np.array([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.1, 0.9]])
    paths = np.array(["a", "a", "a", "b"])
    targets = np.array([0, 0, 0, 1])
    files, mean, first = M.aggregate_by_file(probs, paths)
    assert files.tolist() == ["a", "b"]
    np.testing.assert_allclose(mean[0], [1.7 / 3, 1.3 / 3])
    out = M.compute_metrics(probs, targets, paths, multilabel=False)
    assert out["crop"]["accuracy"] == pytest.approx(0.75)
    assert out["file"]["accuracy"] == pytest.approx(1.0)


def test_label_encoding_single_and_multi():
    assert M.class_names(["b", "a", "b"], False) == ["a", "b"]
    assert M.class_names(["rock;guitar", "rock"], True) == ["guitar", "rock"]
    np.testing.assert_array_equal(
        M.encode_labels(["rock;guitar", "rock"], ["guitar", "rock"], True), [[1, 1], [0, 1]]
    )


# --------------------------------------------------------------- embeddings
def test_save_is_atomic_and_round_trips(tmp_path):
    target = tmp_path / "sub" / "emb"  # no .npz suffix: kept as given
    save_embeddings(target, **make_arrays(n_files=4))
    assert target.is_file() and not (tmp_path / "sub" / "emb.npz").exists()
    assert [p.name for p in target.parent.iterdir()] == ["emb"]
    emb = load_embeddings(target)
    assert len(emb) == 16 and emb.dim == 16 and emb.model == "toy model" and not emb.warnings


@pytest.mark.parametrize("key", ["embeddings", "labels", "paths", "clip_index", "crop_start"])
def test_missing_key_is_a_clear_data_error(tmp_path, key):
    arrays = make_arrays(n_files=4)
    del arrays[key]
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(DataError, match=f"missing array.*'{key}'"):
        load_embeddings(tmp_path / "x.npz")


def test_shape_mismatch_and_bad_files(tmp_path):
    arrays = make_arrays(n_files=4)
    arrays["labels"] = arrays["labels"][:-1]
    with pytest.raises(DataError, match="'labels' has shape"):
        validate_arrays(arrays)
    with pytest.raises(DataError, match="not found"):
        load_embeddings(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not a readable"):
        load_embeddings(tmp_path / "junk.npz")
    arrays = make_arrays(n_files=4)
    arrays["paths"] = arrays["paths"].astype(object)
    np.savez(tmp_path / "obj.npz", **arrays)
    with pytest.raises(DataError, match="pickled"):
        load_embeddings(tmp_path / "obj.npz")


def test_all_labels_empty_is_an_error():
    arrays = make_arrays(n_files=4)
    arrays["labels"] = np.array([""] * len(arrays["labels"]))
    with pytest.raises(DataError, match="every label is empty.*--labels"):
        validate_arrays(arrays)


def test_nan_rows_are_dropped_with_a_count_and_all_nan_is_an_error():
    arrays = make_arrays(n_files=4)
    arrays["embeddings"][[0, 5]] = np.nan
    arrays["embeddings"][7, 3] = np.inf
    arrays["labels"][1] = ""  # one unlabelled crop of a labelled file is dropped too
    emb = validate_arrays(arrays)
    assert len(emb) == 12 and np.isfinite(emb.embeddings).all()
    assert any("dropped 3 of 16 rows" in w and "NaN/Inf" in w for w in emb.warnings)
    assert any("1 unlabelled rows" in w for w in emb.warnings)
    arrays["embeddings"][:] = np.nan
    with pytest.raises(DataError, match="every embedding row contains NaN"):
        validate_arrays(arrays)


def test_labels_must_be_constant_per_file():
    arrays = make_arrays(n_files=4)
    arrays["labels"][1] = "other"
    with pytest.raises(DataError, match="different labels"):
        validate_arrays(arrays)


# ------------------------------------------------------------------- splits
def _check_disjoint(plan, groups=None):
    for s in plan.splits:
        assert not (s.train_files & s.test_files), s.name
        if groups:
            assert not ({groups[f] for f in s.train_files} & {groups[f] for f in s.test_files}), (
                s.name
            )


@pytest.mark.parametrize("use_groups", [False, True])
def test_no_file_or_group_on_both_sides_of_any_split(tmp_path, use_groups):
    names = [f"artist{f // 3}-song{f}.wav" for f in range(60)]
    labels = [f"class{(f // 3) % 4}" for f in range(60)]
    emb = validate_arrays(make_arrays(names=names, labels=labels, crops=3))
    lab = file_labels(emb.paths, emb.labels)
    groups = file_groups(lab, parse_group_by(r"regex:^(artist\d+)-"))[0] if use_groups else None
    plans = [
        holdout_split(sorted(lab), lab, 0.25, 0, groups),
        kfold_splits(sorted(lab), lab, 4, 0, groups),
    ]
    for plan in plans:
        _check_disjoint(plan, groups)
        for s in plan.splits:
            tr, te = rows_in(emb.paths, s.train_files), rows_in(emb.paths, s.test_files)
            assert not (tr & te).any() and (tr | te).all()
            assert not set(emb.paths[tr]) & set(emb.paths[te])
    # every file tested exactly once over the K folds
    tested = [f for s in plans[1].splits for f in s.test_files]
    assert sorted(tested) == sorted(lab)
    # a separate test set: the two sides come from different files, overlaps are reported
    other = validate_arrays(make_arrays(names=[f"x/{n}" for n in names[:8]], labels=labels[:8]))
    plan = separate_test_split(lab, file_labels(other.paths, other.labels))
    assert not plan.warnings and not (plan.splits[0].train_files & plan.splits[0].test_files)
    plan = separate_test_split(lab, lab)
    assert any("occur in both" in w for w in plan.warnings)


def test_holdout_is_stratified_by_file():
    lab = {f"c{c}/f{i}.wav": f"c{c}" for c in range(3) for i in range(10)}
    plan = holdout_split(sorted(lab), lab, 0.2, seed=1)
    test = plan.splits[0].test_files
    assert [sum(lab[f] == f"c{c}" for f in test) for c in range(3)] == [2, 2, 2]


def test_esc50_official_folds_are_reproduced(tmp_path):
    names, labels = esc_names()
    lab = dict(zip(names, labels))
    groups, notes = file_groups(lab, parse_group_by(r"regex:^(\d)-"))
    assert not notes
    for seed in (0, 3):
        plan = kfold_splits(sorted(lab), lab, 5, seed, groups)
        assert [s.test_groups for s in plan.splits] == [("1",), ("2",), ("3",), ("4",), ("5",)]
        for i, s in enumerate(plan.splits, start=1):
            assert s.test_files == {n for n in names if os.path.basename(n).startswith(f"{i}-")}
            assert s.train_files == set(names) - s.test_files


def test_class_with_one_file_stays_in_training_with_a_warning():
    lab = {f"a{i}": "a" for i in range(6)} | {f"b{i}": "b" for i in range(6)} | {"lonely": "c"}
    plan = holdout_split(sorted(lab), lab, 0.3, 0)
    assert "lonely" in plan.splits[0].train_files
    assert any("single file" in w and "'c'" in w for w in plan.warnings)


def test_group_by_mistakes():
    with pytest.raises(ConfigError, match="regex:PATTERN"):
        parse_group_by("^(\\d)-")
    with pytest.raises(ConfigError, match="invalid regular expression"):
        parse_group_by("regex:([")
    with pytest.raises(DataError, match="no file name matches"):
        file_groups(["a.wav", "b.wav"], parse_group_by(r"regex:^(\d)-"))
    groups, notes = file_groups(["1-x.wav", "b.wav"], parse_group_by(r"regex:^(\d)-"))
    assert groups["1-x.wav"] == "1" and "1 file(s) match no group" in notes[0]
    with pytest.raises(DataError, match="cannot make 5 folds from 3 files"):
        kfold_splits(["a", "b", "c"], {"a": "x", "b": "y", "c": "x"}, 5)


# -------------------------------------------------------- probe / reduction
def test_class_balanced_subsets_keep_every_class():
    from cpc_tf.evaluation.probe import class_balanced_subset

    lab = {f"c{c}-{i}": f"c{c}" for c in range(4) for i in range(10 * (c + 1))}
    sub = class_balanced_subset(sorted(lab), lab, 0.1, seed=0)
    assert [sum(lab[f] == f"c{c}" for f in sub) for c in range(4)] == [1, 2, 3, 4]
    assert (
        class_balanced_subset(sorted(lab), lab, 0.01)
        and len(class_balanced_subset(sorted(lab), lab, 0.01)) == 4
    )
    assert class_balanced_subset(sorted(lab), lab, 1.0) == sorted(lab)
    ml = {f"f{i}": ("a;b" if i % 10 == 0 else "a") for i in range(50)} | {"rare": "z"}
    sub = class_balanced_subset(sorted(ml), ml, 0.02, seed=0, multilabel=True)
    assert {t for f in sub for t in ml[f].split(";")} == {"a", "b", "z"}


def test_early_stopping_slice_takes_whole_files_and_never_a_class_last_file():
    from cpc_tf.evaluation.probe import _validation_files

    files = np.repeat([f"a{i}" for i in range(10)] + ["b0", "c0", "c1"], 3)
    y = np.repeat([0] * 10 + [1, 2, 2], 3)
    val = _validation_files(files, y, 0.2, seed=0)
    assert len(val) == 2 and all(v.startswith("a") for v in val)


def test_plain_array_helpers_split_by_file_and_probe_string_labels():
    from cpc_tf.evaluation.probe import train_probe
    from cpc_tf.evaluation.splits import split_by_file

    emb = validate_arrays(make_arrays(n_files=24, crops=3, n_classes=3))
    tr, te = split_by_file(emb.paths, emb.labels, test_fraction=0.25, seed=0)
    assert len(tr) + len(te) == len(emb) and not set(emb.paths[tr]) & set(emb.paths[te])
    res = train_probe(
        emb.embeddings[tr],
        emb.labels[tr],
        emb.embeddings[te],
        emb.labels[te],
        fast_cfg(probe_epochs=5, classifier="linear"),
    )
    assert res.classes == ["class0", "class1", "class2"] and res.accuracy >= 0.9
    assert res.probs.shape == (len(te), 3) and len(res.history["loss"]) == 5
    res = train_probe(
        emb.embeddings[tr], emb.labels[tr], emb.embeddings[te], emb.labels[te], fast_cfg()
    )
    assert res.classes == ["class0", "class1", "class2"] and res.accuracy >= 0.9
    assert res.probs.shape == (len(te), 3) and res.monitor == "cross-validation"


def test_autoencoder_matches_table_4():
    from cpc_tf.evaluation.autoencoder import build_autoencoder, fit_autoencoder

    auto, enc = build_autoencoder(48)
    dense = [layer.units for layer in auto.layers if layer.__class__.__name__ == "Dense"]
    assert dense == [256, 256, 128, 64, 32, 64, 128, 256, 48]
    assert enc.output_shape == (None, 32)
    x = np.random.default_rng(0).normal(size=(64, 48)).astype(np.float32)
    res = fit_autoencoder(x, epochs=1, seed=0)
    assert res.reduce(x[:5]).shape == (5, 32) and len(res.history["loss"]) == 1


def test_evaluation_never_imports_models_or_audio():
    for path in EVAL_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert not name.startswith(("cpc_tf.models", "cpc_tf.audio", "tensorflow.keras")), (
                    path,
                    name,
                )


# ------------------------------------------------------------------- report
def test_report_multilabel_end_to_end(tmp_path):
    from cpc_tf.evaluation.report import evaluate

    labels = [["rock", "pop", "jazz", "rock;guitar", "pop;guitar"][f % 5] for f in range(50)]
    emb = write_npz(tmp_path / "ml.npz", n_files=50, labels=labels, crops=3)
    out = tmp_path / "rep"
    result = evaluate(
        emb,
        fast_cfg(early_stopping_patience=2, probe_epochs=6, classifier="linear"),
        out,
        test_fraction=0.3,
    )
    assert result["task"] == "multi-label" and result["primary_metric"] == "pr_auc_tag"
    crop = result["results"]["model"]["crop"]
    assert set(crop) == {"roc_auc_tag", "pr_auc_tag", "roc_auc_clip", "pr_auc_clip", "macro_f1"}
    assert crop["roc_auc_tag"]["mean"] > 0.9 and crop["pr_auc_tag"]["mean"] > 0.8
    assert "confusion_matrix.png" not in result["figures"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["results"]["model"]["file"]["pr_auc_tag"]["mean"] == pytest.approx(
        result["results"]["model"]["file"]["pr_auc_tag"]["mean"]
    )
    for name in ("tsne_classes.png", "tsne_train_test.png", "probe_curves.png"):
        assert_not_blank(out / name)
    assert "roc_auc_clip" in (out / "report.md").read_text()


def test_report_official_folds_autoencoder_and_unseen_test_classes(tmp_path):
    from cpc_tf.evaluation.report import evaluate

    names, labels = esc_names(per_fold=4)
    emb = write_npz(tmp_path / "esc.npz", names=names, labels=labels, crops=2)
    result = evaluate(
        emb,
        fast_cfg(probe_epochs=1, classifier="mlp", mlp_hidden=16),
        tmp_path / "r1",
        folds=5,
        group_by=r"regex:^(\d)-",
    )
    splits = result["split"]["splits"]
    assert [s["test_groups"] for s in splits] == [["1"], ["2"], ["3"], ["4"], ["5"]]
    assert all(s["test_files"] == 4 and s["train_files"] == 16 for s in splits)
    assert result["results"]["model"]["crop"]["accuracy"]["n"] == 5

    train = write_npz(tmp_path / "tr.npz", n_files=16, n_classes=2, seed=0)
    test_labels = ["class0", "class1", "class7", "class7"]
    test = write_npz(
        tmp_path / "te.npz", names=[f"t{i}.wav" for i in range(4)], labels=test_labels, seed=0
    )
    result = evaluate(train, fast_cfg(reduce="autoencoder"), tmp_path / "r2", test_path=test)
    assert result["classes"] == ["class0", "class1", "class7"]
    assert any("never occur in training" in w and "'class7'" in w for w in result["warnings"])
    assert result["results"]["model"]["crop"]["accuracy"]["mean"] <= 0.5 + 1e-9
    assert "never occur in training" in (tmp_path / "r2" / "report.md").read_text()


def test_report_rejects_a_single_class(tmp_path):
    from cpc_tf.evaluation.report import evaluate

    emb = write_npz(tmp_path / "one.npz", n_files=6, labels=["only"] * 6)
    with pytest.raises(DataError, match="only one class"):
        evaluate(emb, fast_cfg(), tmp_path / "r")


# ---------------------------------------------------------------------- CLI
def test_cli_errors_are_one_line(tmp_path, capsys):
    from cpc_tf.cli import main

    arrays = make_arrays(n_files=4)
    del arrays["labels"]
    np.savez(tmp_path / "bad.npz", **arrays)
    assert (
        main(["evaluate", "--embeddings", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "r")])
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing array(s) 'labels'" in err[0]
    good = write_npz(tmp_path / "good.npz", n_files=8)
    assert (
        main(
            [
                "evaluate",
                "--embeddings",
                good,
                "--label-fractions",
                "0.1,x",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert (
        main(["evaluate", "--embeddings", good, "--group-by", "^x", "--out", str(tmp_path / "r")])
        == 2
    )
    assert (
        main(["evaluate", "--embeddings", good, "--folds", "1", "--out", str(tmp_path / "r")]) == 2
    )
    assert not (tmp_path / "r").exists()
    (tmp_path / "file").write_text("x")
    capsys.readouterr()
    assert main(["evaluate", "--embeddings", good, "--out", str(tmp_path / "file")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_cli_end_to_end_with_baseline_and_label_fractions(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("epoch,loss,val_loss\n0,3.2,3.3\n1,2.5,2.7\n2,2.1,2.4\n")
    (run / "config.yaml").write_text("name: toy_run\ntrain:\n  epochs: 3\n")
    model = write_npz(tmp_path / "model.npz", n_files=48, crops=4, run=str(run))
    baseline = write_npz(tmp_path / "base.npz", n_files=48, crops=4, noise=25.0, seed=1)
    out = tmp_path / "report"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpc_tf",
            "evaluate",
            "--embeddings",
            model,
            "--baseline",
            baseline,
            "--test-fraction",
            "0.25",
            "--label-fractions",
            "0.1,1",
            "--out",
            str(out),
            "--set",
            "eval.probe_epochs=5",
            "--set",
            "eval.probe_learning_rate=0.02",
            "--set",
            "eval.tsne_max_points=40",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "report.md" in proc.stdout and "Traceback" not in proc.stderr
    result = json.loads((out / "metrics.json").read_text())
    model_acc = result["results"]["model"]["crop"]["accuracy"]["mean"]
    assert model_acc >= 0.9
    assert result["results"]["model"]["file"]["accuracy"]["mean"] >= 0.9
    assert result["results"]["baseline"]["crop"]["accuracy"]["mean"] < model_acc
    assert set(result["data_efficiency"]["model"]) == {"0.1", "1.0"}
    assert result["data_efficiency"]["model"]["0.1"]["train_files"] == 4  # one file per class
    cm = np.asarray(result["confusion_matrix"]["model"]["matrix"])
    assert cm.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(
        cm.sum(axis=1), [0.25] * 4
    )  # the class frequencies of the test crops
    report = (out / "report.md").read_text()
    for text in (
        "| accuracy | crop |",
        "baseline",
        "## Data efficiency",
        "![confusion_matrix.png]",
        "name: toy_run",
        "| holdout | 36 | 144 | 12 | 48 |",
    ):
        assert text in report
    for name in (
        "confusion_matrix.png",
        "confusion_matrix_baseline.png",
        "tsne_classes.png",
        "tsne_train_test.png",
        "pretrain_loss.png",
        "data_efficiency.png",
    ):
        assert_not_blank(out / name)
        assert name in result["figures"]
    # the default probe is a logistic regression: no epochs, so no curves to draw
    assert "probe_curves.png" not in result["figures"] and not (out / "probe_curves.png").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
