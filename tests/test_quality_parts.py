"""The pieces of the representation-quality work: the converged probe, file pooling,
the MFCC reference, the spectrogram augmentations, the log-mel encoder, the
learning-rate schedule and the supervised reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY_CPC, tiny_config

from cpc_tf.config import EvalConfig, from_dict
from cpc_tf.evaluation.metrics import pool_by_file
from cpc_tf.evaluation.probe import train_probe


# ----------------------------------------------------------------------- probe
def test_logistic_probe_converges_on_separable_embeddings():
    rng = np.random.default_rng(0)
    n, classes = 300, 5
    y = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, 16)) * 4
    x = centres[y] + rng.normal(size=(n, 16)) * 0.3  # linearly separable clusters
    res = train_probe(
        x[:200], y[:200], x[200:], y[200:], EvalConfig(), n_classes=classes, multilabel=False
    )
    assert res.accuracy == 1.0
    assert res.c in EvalConfig().logistic_c and res.monitor == "cross-validation"


def test_table5_probe_stays_available():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    x = rng.normal(size=(400, 32)) * 0.01
    x[:, :4] += np.eye(4)[y] * 0.05  # separable, small scale
    table5 = train_probe(
        x[:300],
        y[:300],
        x[300:],
        y[300:],
        EvalConfig(classifier="linear"),
        n_classes=4,
        multilabel=False,
    )
    logistic = train_probe(
        x[:300], y[:300], x[300:], y[300:], EvalConfig(), n_classes=4, multilabel=False
    )
    assert logistic.accuracy == 1.0
    assert table5.epochs_run == 10  # Bajorath et al. 2021, Table 5


def test_logistic_probe_handles_multilabel_tags():
    rng = np.random.default_rng(2)
    y = (rng.random((240, 3)) < 0.4).astype(np.float32)
    x = y * 3 + rng.normal(size=(240, 3)) * 0.2
    res = train_probe(
        x[:160], y[:160], x[160:], y[160:], EvalConfig(), n_classes=3, multilabel=True
    )
    assert res.probs.shape == (80, 3)
    assert np.mean((res.probs > 0.5) == (y[160:] > 0.5)) > 0.95


def test_pool_by_file_mean_and_std():
    values = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 5.0]])
    paths = np.array(["b.wav", "b.wav", "a.wav"])
    files, feats, first = pool_by_file(values, paths, "mean_std")
    assert files.tolist() == ["a.wav", "b.wav"]
    np.testing.assert_allclose(feats, [[5, 5, 0, 0], [2, 4, 1, 2]])
    assert paths[first].tolist() == ["a.wav", "b.wav"]


# ------------------------------------------------------------------ references
def test_mfcc_reference_matches_librosa_on_a_tone():
    librosa = pytest.importorskip("librosa")
    from cpc_tf.features import FeatureSpec, frame_features

    sr = 22050
    t = np.arange(int(0.7 * sr)) / sr
    y = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 2500 * t)).astype(np.float32)
    ours = frame_features(y, FeatureSpec()).numpy()
    ref = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20).T
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-3 * np.abs(ref).max())


# --------------------------------------------------------------- augmentations
def test_log_mixup_exp_mixes_power_not_decibels():
    from cpc_tf.dsp.spec_augment import log_mixup_exp

    a = tf.fill([1, 2, 2], 0.0)  # power 1
    b = tf.fill([1, 2, 2], 10.0)  # power 10
    mixed = log_mixup_exp(a, b, tf.constant([0.5]))
    np.testing.assert_allclose(mixed.numpy(), 10 * math.log10(5.5), rtol=1e-5)


def test_random_resized_crop_keeps_shape_and_identity_box_is_identity():
    from cpc_tf.dsp.spec_augment import random_resized_crop

    x = tf.random.stateless_normal([3, 20, 8], [1, 1])
    y = random_resized_crop(x, tf.constant([4, 5], tf.int64))
    assert y.shape == x.shape
    same = random_resized_crop(
        x, tf.constant([4, 5], tf.int64), (1.0, 1.0), (1.0, 1.0), virtual=1.0
    )
    np.testing.assert_allclose(same.numpy(), x.numpy(), atol=1e-5)


def test_spectrogram_chain_is_seeded_and_differs_between_views():
    from cpc_tf.config import AugmentConfig
    from cpc_tf.dsp.spec_augment import augment_spectrogram

    x = tf.random.stateless_normal([4, 32, 16], [2, 2]) * 10 - 40
    cfg = AugmentConfig(chain="spectrogram")
    a = augment_spectrogram(x, cfg, tf.constant([1, 2], tf.int64))
    b = augment_spectrogram(x, cfg, tf.constant([1, 2], tf.int64))
    c = augment_spectrogram(x, cfg, tf.constant([1, 3], tf.int64))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), c.numpy())


# ---------------------------------------------------------------- log-mel model
TINY_MEL = {
    "data": {"sample_rate": 8000, "clip_seconds": 0.5},
    "model": {
        "encoder": "melconv",
        "c_dim": 16,
        "predict_steps": 2,
        "prediction": "all",
        "negatives": "batch",
        "melconv": {
            "n_fft": 200,
            "hop": 80,
            "n_mels": 16,
            "filters": [4, 4],
            "time_pools": [1, 2],
            "dims": [8],
        },
    },
    "train": {"batch_size": 4},
}


def test_melconv_cpc_codes_follow_the_hop_and_train():
    from cpc_tf.models.factory import build_model
    from cpc_tf.models.registry import code_hop_samples, model_input_shape

    cfg = from_dict(TINY_MEL)
    assert model_input_shape(cfg) == (4000,)
    assert code_hop_samples(cfg) == 160
    model = build_model(cfg)
    z, c = model.codes_and_contexts(tf.zeros([2, 4000]))
    assert z.shape == (2, 26, 8) and c.shape == (
        2,
        26,
        16,
    )  # 1 + 4000 // 80 = 51 frames, pooled by 2
    model.compile(optimizer="adam")
    out = model.train_step(tf.random.stateless_normal([4, 4000], [0, 1]))
    assert np.isfinite(float(out["loss"]))


def test_simclr_mel_runs_the_spectrogram_chain_in_the_model():
    from cpc_tf.models.factory import build_model

    cfg = from_dict(
        {
            **TINY_MEL,
            "model": {
                **TINY_MEL["model"],
                "family": "simclr",
                "prediction": "auto",
                "negatives": "same_step",
                "projection_dims": [8, 4],
            },
            "augment": {"chain": "spectrogram"},
        }
    )
    model = build_model(cfg)
    assert type(model.augmenter).__name__ == "SpectrogramAugment"
    x = tf.random.stateless_normal([4, 4000], [3, 1])
    assert model(x).shape == (4, 8)  # mean + max over time of the 8-d frame codes
    model.compile(optimizer="adam")
    assert np.isfinite(float(model.train_step((x, x))["loss"]))


def test_simclr_wave_preset_ends_in_one_frame_and_trains():
    from cpc_tf.config import load_config, resolve_config_path
    from cpc_tf.models.encoders import samplecnn_output_steps
    from cpc_tf.models.factory import build_model

    cfg = load_config(resolve_config_path("simclr_wave"))
    assert (cfg.crop_samples, cfg.data.sample_rate) == (3**9, 16000)
    assert samplecnn_output_steps(cfg.crop_samples, len(cfg.model.samplecnn.channels)) == 1
    assert (cfg.train.optimizer, cfg.train.lr_schedule) == ("adamw", "cosine")
    model = build_model(cfg)
    x = tf.random.stateless_normal([2, cfg.crop_samples], [5, 1])
    assert model(x).shape == (2, cfg.model.samplecnn.out_filters)
    model.compile(optimizer="adam")
    assert np.isfinite(float(model.train_step((x, x[:, ::-1]))["loss"]))


# ------------------------------------------------------------------ optimiser
def test_warmup_cosine_schedule():
    from cpc_tf.training import WarmupSchedule

    s = WarmupSchedule(1.0, warmup_steps=10, total_steps=110, kind="cosine")
    assert float(s(0)) == pytest.approx(0.1)
    assert float(s(9)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.5, abs=1e-6)  # half-way through the cosine
    assert float(s(200)) == pytest.approx(0.0, abs=1e-7)
    constant = WarmupSchedule(2.0, warmup_steps=4)
    assert [round(float(constant(i)), 3) for i in (0, 3, 50)] == [0.5, 2.0, 2.0]


def test_every_family_gets_adamw_with_warmup_and_cosine():
    from cpc_tf.training import WarmupSchedule, make_optimizer

    for family in ({}, {"family": "simclr", "encoder": "samplecnn"}):
        cfg = tiny_config(
            TINY_CPC,
            model=family,
            augment={"chain": "spectrogram"},
            train={
                "optimizer": "adamw",
                "lr_schedule": "cosine",
                "warmup_steps": 5,
                "weight_decay": 1e-4,
            },
        )
        opt = make_optimizer(cfg, total_steps=50)
        assert type(opt).__name__ == "AdamW" and isinstance(
            opt.learning_rate_schedule
            if hasattr(opt, "learning_rate_schedule")
            else opt._learning_rate,
            WarmupSchedule,
        )


def test_compare_sources_by_hand():
    """2σ = 2·sqrt(sd_m² + p_m(1-p_m)/n + sd_b² + p_b(1-p_b)/n); two folds of 50 files: n = 100."""
    from cpc_tf.evaluation.report import compare_sources

    runs = [
        {"split": "fold1", "seed": 0, "test_files": 50},
        {"split": "fold2", "seed": 0, "test_files": 50},
    ]

    def source(mean: float, std: float) -> dict:
        return {"file": {"accuracy": {"mean": mean, "std": std}}, "runs": runs}

    rows = compare_sources(
        {"model": source(0.92, 0.0), "random-init": source(0.80, 0.0), "mfcc": source(0.88, 0.02)},
        "accuracy",
    )
    by = {r["baseline"]: r for r in rows}
    assert by["random-init"]["two_sigma"] == pytest.approx(
        2 * math.sqrt(0.92 * 0.08 / 100 + 0.8 * 0.2 / 100)
    )
    assert (
        by["random-init"]["difference"] == pytest.approx(0.12)
        and by["random-init"]["beyond_spread"]
    )
    assert by["mfcc"]["two_sigma"] == pytest.approx(
        2 * math.sqrt(0.92 * 0.08 / 100 + 0.02**2 + 0.88 * 0.12 / 100)
    )
    assert not by["mfcc"]["beyond_spread"]  # 0.04 < 0.094


@pytest.mark.slow
def test_recommended_cpc_beats_random_init_on_temporal_classes(tmp_path):
    """The demo end to end (its full 500-step budget, ~4 minutes on 2 cores): on clips whose
    classes are each other's time reverse, the pre-trained cpc_wave is above its random
    init beyond the spread, and MFCC statistics are near chance."""
    import json

    from cpc_tf.demo import DEMO_SPEC, run_demo
    from cpc_tf.synth import TEMPORAL_CLASSES

    assert DEMO_SPEC.classes == TEMPORAL_CLASSES
    report = run_demo(str(tmp_path / "demo"), verbose=0)
    metrics = json.loads((tmp_path / "demo" / "report" / "metrics.json").read_text())
    acc = {k: v["file"]["accuracy"]["mean"] for k, v in metrics["results"].items()}
    verdict = {c["baseline"]: c for c in metrics["comparison"]}
    assert acc["model"] >= 0.95, acc
    assert acc["model"] - acc["random-init"] >= 0.05 and verdict["random-init"]["beyond_spread"], (
        verdict
    )
    assert acc["mfcc"] <= 0.6 and verdict["mfcc"]["beyond_spread"], acc
    text = open(report).read()
    assert "model − random-init" in text and "beyond the spread" in text
