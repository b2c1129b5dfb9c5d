"""The training engine: run folder, resume after kill -9, NaN stop, two replicas, learning."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from helpers import TINY_CPC, run_cli, set_flags, synth_folder, tiny_config

import cpc_tf.models  # noqa: F401  (registers the saved classes)
from cpc_tf.callbacks import AtomicBackupAndRestore, AtomicModelCheckpoint
from cpc_tf.models.factory import build_model
from cpc_tf.training import Trainer, make_optimizer, truncate_history


def _history(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    return synth_folder(tmp_path_factory.mktemp("audio"), files=4)


def test_train_writes_the_run_folder(audio_dir, tmp_path):
    run = tmp_path / "run"
    out = run_cli(
        "train",
        "--audio-dir",
        str(audio_dir),
        "--out",
        str(run),
        "--cache-dir",
        str(tmp_path / "cache"),
        *set_flags(TINY_CPC),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    # stdout is a pipe: one progress line per epoch, no bar redrawn with control characters
    assert "\x08" not in out.stdout and "\r" not in out.stdout and "\x1b" not in out.stdout
    assert len(re.findall(r"^3/3 - .*loss: ", out.stdout, flags=re.M)) == 2, out.stdout
    assert re.search(
        r"trained 2 epoch\(s\); run folder: .* \(\d+(\.\d)? [kM]B\)$", out.stdout.strip()
    )
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["c_dim"] == 16 and cfg["train"]["epochs"] == 2  # full resolved config
    assert (run / "model.keras").is_file() and (run / "encoder.keras").is_file()
    assert sorted(os.listdir(run / "checkpoints")) == [
        "backup",
        "epoch_001.weights.h5",
        "epoch_002.weights.h5",
    ]
    rows = _history(run / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"loss", "cpc_acc", "cpc_acc_k1", "cpc_acc_k2"} <= set(rows[0])
    assert any(f.startswith("events") for _, _, fs in os.walk(run / "tensorboard") for f in fs)
    # the saved model loads back with nothing but cpc_tf's registered classes
    model = keras.saving.load_model(run / "model.keras")
    x = np.random.default_rng(0).normal(size=(2, 6, 800)).astype("float32")
    again = keras.saving.load_model(run / "model.keras")
    np.testing.assert_allclose(model(x).numpy(), again(x).numpy(), rtol=1e-6)
    encoder = keras.saving.load_model(run / "encoder.keras")
    assert encoder(x[:, 0]).shape == (2, 16)
    # a second train into the same folder refuses; --resume of a finished run says so
    again = run_cli("train", "--audio-dir", str(audio_dir), "--out", str(run))
    assert again.returncode == 2 and "already holds a run" in again.stderr
    done = run_cli("train", "--out", str(run), "--resume")
    assert done.returncode == 0 and "already finished 2 epochs" in done.stdout


def test_bad_run_folders_give_one_line(tmp_path, audio_dir):
    out = run_cli("train", "--out", str(tmp_path), "--resume")
    assert (
        out.returncode == 2
        and "not a cpc_tf run folder" in out.stderr
        and "Traceback" not in out.stderr
    )
    locked = tmp_path / "locked"
    locked.write_text("a file, not a folder")
    out = run_cli(
        "train", "--audio-dir", str(audio_dir), "--out", str(locked / "run"), *set_flags(TINY_CPC)
    )
    assert (
        out.returncode == 1
        and "cannot write the run folder" in out.stderr
        and "Traceback" not in out.stderr
    )


def test_kill_9_then_resume_loses_and_repeats_no_epoch(audio_dir, tmp_path):
    run = tmp_path / "run"
    flags = set_flags(TINY_CPC) + ["--set", "train.epochs=5", "--set", "train.steps_per_epoch=6"]
    cmd = [
        sys.executable,
        "-m",
        "cpc_tf",
        "train",
        "--audio-dir",
        str(audio_dir),
        "--out",
        str(run),
        "--cache-dir",
        str(tmp_path / "cache"),
        *flags,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = run / "history.csv"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if history.exists() and len(_history(history)) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail("training ended before it could be killed")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done_before = len(_history(history))
    assert 2 <= done_before < 5
    out = run_cli("train", "--out", str(run), "--resume", "--cache-dir", str(tmp_path / "cache"))
    assert out.returncode == 0, out.stderr[-3000:]
    epochs = [int(r["epoch"]) for r in _history(history)]
    assert epochs == [0, 1, 2, 3, 4]
    assert (run / "model.keras").is_file()


def test_truncate_history_drops_redone_epochs(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("epoch,loss\n0,1.0\n1,0.9\n2,0.8\n")
    truncate_history(str(path), 2)
    assert path.read_text().splitlines() == ["epoch,loss", "0,1.0", "1,0.9"]


def _tiny_model(strategy=None, **sections):
    cfg = tiny_config(TINY_CPC, **sections)
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(cfg)
        model.compile(optimizer=make_optimizer(cfg))
        model.optimizer.build(model.trainable_variables)
    return cfg, model


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg, model = _tiny_model()
    rng = np.random.default_rng(0)
    good = rng.normal(size=(4, 6, 800)).astype("float32")
    bad = np.full_like(good, np.nan)

    def dataset_fn(ctx, epoch, training):  # epoch 1 (two steps) is good, then NaN forever
        return (
            tf.data.Dataset.from_tensors(good)
            .repeat(2)
            .concatenate(tf.data.Dataset.from_tensors(bad).repeat())
        )

    backup = AtomicBackupAndRestore(str(tmp_path / "backup"))
    ckpt = AtomicModelCheckpoint(
        str(tmp_path / "epoch_{epoch:03d}.weights.h5"), save_weights_only=True
    )
    trainer = Trainer(model, tf.distribute.get_strategy(), dataset_fn)
    result = trainer.fit(3, 2, [backup, ckpt, keras.callbacks.TerminateOnNaN()], verbose=0)
    assert result.stopped_on_nan and result.epochs_completed == 1
    assert (tmp_path / "epoch_001.weights.h5").exists() and not (
        tmp_path / "epoch_002.weights.h5"
    ).exists()
    assert backup.completed_epochs() == 1
    # the kept checkpoint holds finite weights
    fresh = build_model(cfg)
    fresh.load_weights(tmp_path / "epoch_001.weights.h5")
    assert all(np.isfinite(w).all() for w in fresh.get_weights())


def test_one_step_on_two_replicas_equals_one_device():
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.skip("needs two logical CPU devices")
    mirrored = tf.distribute.MirroredStrategy(
        [c.name for c in cpus[:2]], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    batch = np.random.default_rng(1).normal(size=(8, 6, 800)).astype("float32")

    def dataset_fn(ctx, epoch, training):
        per = ctx.get_per_replica_batch_size(8)
        lo = ctx.input_pipeline_id * per
        return tf.data.Dataset.from_tensors(batch[lo : lo + 8]).unbatch().batch(per).repeat()

    # Plain SGD: Adam would turn the float noise in the gradients of the conv biases that
    # feed BatchNorm (mathematically zero) into full-size steps of random sign.
    sgd = {"optimizer": "sgd", "beta_1": 0.0, "learning_rate": 0.05}
    _, single = _tiny_model(train=sgd)
    _, multi = _tiny_model(mirrored, train=sgd)
    np.testing.assert_allclose(single.get_weights()[0], multi.get_weights()[0])
    t1 = Trainer(single, tf.distribute.get_strategy(), dataset_fn)
    t2 = Trainer(multi, mirrored, dataset_fn)
    out1 = t1.train_fn(next(iter(t1._dist(0, True))))
    out2 = t2.train_fn(next(iter(t2._dist(0, True))))
    assert float(out2["loss"]) == pytest.approx(float(out1["loss"]), rel=1e-5)
    assert float(out2["cpc_acc"]) == pytest.approx(float(out1["cpc_acc"]), abs=1e-6)
    # after the update the weights agree too: gradients were averaged over the global batch
    for a, b in zip(single.get_weights(), multi.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_contrastive_accuracy_climbs_on_predictable_sequences():
    """Each example is a sine of its own frequency: its future windows are predictable."""
    cfg, model = _tiny_model()
    rng = np.random.default_rng(2)
    t = np.arange(6 * 800) / 4000.0

    def batches():
        while True:
            freqs = rng.uniform(100, 1500, size=4)
            phases = rng.uniform(0, 2 * np.pi, size=4)
            x = np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None]).astype("float32")
            yield x.reshape(4, 6, 800)

    def dataset_fn(ctx, epoch, training):
        return tf.data.Dataset.from_generator(
            batches, output_signature=tf.TensorSpec([4, 6, 800], tf.float32)
        )

    trainer = Trainer(model, tf.distribute.get_strategy(), dataset_fn)
    it = iter(trainer._dist(0, True))
    accs = [float(trainer.train_fn(next(it))["cpc_acc"]) for _ in range(300)]
    start, end = np.mean(accs[:20]), np.mean(accs[-30:])
    assert end > 0.6 and end > start + 0.3, (start, end)  # chance is 1/4


def test_a_start_that_fails_on_the_data_leaves_no_run(tmp_path):
    run = tmp_path / "run"
    out = run_cli(
        "train", "--audio-dir", str(tmp_path / "missing"), "--out", str(run), *set_flags(TINY_CPC)
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert not (run / "config.yaml").exists()  # so the retry is a fresh start, not a --resume


def test_export_savedmodel_serves_the_representation(tmp_path):
    """The seed-default CPC (wide convolutions: the custom-gradient paths of fastops) exports and
    serves.
    """
    from cpc_tf.config import Config
    from cpc_tf.training import export_savedmodel

    model = build_model(Config())
    x = np.random.default_rng(3).normal(size=(2, 30, 588)).astype("float32")
    path = tmp_path / "saved_model"
    export_savedmodel(model, str(path))
    export_savedmodel(model, str(path))  # replacing an earlier export
    assert (
        sorted(p for p in os.listdir(tmp_path) if p.startswith(".")) == []
    )  # no temp or old folder left
    loaded = tf.saved_model.load(str(path))  # keep a reference: it owns the variables
    served = loaded.serve(tf.constant(x))
    np.testing.assert_allclose(
        served.numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-5
    )
    assert served.shape == (2, 512)


def test_train_can_export_a_savedmodel(audio_dir, tmp_path):
    run = tmp_path / "run"
    out = run_cli(
        "train",
        "--audio-dir",
        str(audio_dir),
        "--out",
        str(run),
        "--cache-dir",
        str(tmp_path / "cache"),
        *set_flags(TINY_CPC),
        "--set",
        "train.epochs=1",
        "--set",
        "train.export_savedmodel=true",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    x = np.random.default_rng(0).normal(size=(3, 6, 800)).astype("float32")
    loaded = tf.saved_model.load(str(run / "saved_model"))
    served = loaded.serve(tf.constant(x))
    model = keras.saving.load_model(run / "model.keras")
    np.testing.assert_allclose(served.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_remove_stale_temps_clears_only_its_own_files_and_export_folders(tmp_path):
    from cpc_tf.fileio import TEMP_PREFIX, remove_stale_temps

    (tmp_path / f"{TEMP_PREFIX}11-model.keras").write_text("half")
    (tmp_path / f"{TEMP_PREFIX}12-saved_model" / "variables").mkdir(parents=True)
    (tmp_path / f"{TEMP_PREFIX}12-saved_model" / "saved_model.pb").write_text("half")
    (tmp_path / "model.keras").write_text("kept")
    (tmp_path / "saved_model").mkdir()
    (tmp_path / ".tmp-notes.txt").write_text("a user's file that merely looks temporary")
    remove_stale_temps(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [".tmp-notes.txt", "model.keras", "saved_model"]


def test_a_failed_export_is_one_error_and_keeps_the_trained_model(audio_dir, tmp_path, monkeypatch):
    import json

    import cpc_tf.training as training
    import cpc_tf.training.command as command
    from cpc_tf.errors import TrainingError

    def disk_full(model, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(command, "export_savedmodel", disk_full)
    cfg = tiny_config(TINY_CPC, train={"epochs": 1, "export_savedmodel": True})
    run = tmp_path / "run"
    with pytest.raises(
        TrainingError, match="model.keras is saved, but exporting the SavedModel .* No space left"
    ):
        training.train(
            cfg,
            training.TrainOptions(
                run_dir=str(run),
                audio_dir=str(audio_dir),
                cache_dir=str(tmp_path / "cache"),
                verbose=0,
            ),
        )
    assert (run / "model.keras").is_file() and (run / "encoder.keras").is_file()
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_negative_queue_on_two_replicas_equals_one_device():
    """Two steps with a queue: the second step's loss uses the first step's codes, which
    every replica pushed as the same gathered global batch (in global order)."""
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.skip("needs two logical CPU devices")
    mirrored = tf.distribute.MirroredStrategy(
        [c.name for c in cpus[:2]], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    rng = np.random.default_rng(2)
    batches = [rng.normal(size=(8, 6, 800)).astype("float32") for _ in range(2)]

    def dataset_fn(ctx, epoch, training):
        per = ctx.get_per_replica_batch_size(8)
        lo = ctx.input_pipeline_id * per
        return (
            tf.data.Dataset.from_tensor_slices(np.stack([b[lo : lo + 8] for b in batches]))
            .unbatch()
            .batch(per)
            .repeat()
        )

    sections = {
        "train": {"optimizer": "sgd", "beta_1": 0.0, "learning_rate": 1e-8},
        "model": {
            "prediction": "all",
            "negatives": "batch",
            "queue_size": 100,
            "conv1d": {"filters": 16, "hidden_units": 32, "dropout": 0.0, "norm": "layer"},
        },
    }
    _, single = _tiny_model(**sections)
    _, multi = _tiny_model(mirrored, **sections)
    t1 = Trainer(single, tf.distribute.get_strategy(), dataset_fn)
    t2 = Trainer(multi, mirrored, dataset_fn)
    it1, it2 = iter(t1._dist(0, True)), iter(t2._dist(0, True))
    for step in range(2):
        out1, out2 = t1.train_fn(next(it1)), t2.train_fn(next(it2))
        assert float(out2["loss"]) == pytest.approx(float(out1["loss"]), rel=1e-5), step
    assert (
        int(single.queue.count.numpy()) == int(multi.queue.count.numpy()) == 96
    )  # 2 steps × 8 clips × 6
    np.testing.assert_allclose(
        multi.queue.codes.numpy(), single.queue.codes.numpy(), rtol=1e-4, atol=1e-5
    )


def test_negative_queue_survives_resume(audio_dir, tmp_path):
    """The resumed run starts from the queue the first run saved, not from an empty one."""
    from cpc_tf.config import replace_keys
    from cpc_tf.training import TrainOptions, load_run_model, train

    cfg = tiny_config(
        TINY_CPC,
        train={"epochs": 1, "steps_per_epoch": 3},
        model={"prediction": "all", "negatives": "batch", "queue_size": 30},
    )
    options = TrainOptions(
        run_dir=str(tmp_path / "run"),
        audio_dir=str(audio_dir),
        cache_dir=str(tmp_path / "cache"),
        verbose=0,
    )
    train(cfg, options)
    first = load_run_model(options.run_dir)
    saved = first.queue.codes.numpy()
    assert (
        int(first.queue.count.numpy()) == 30 and np.abs(saved).sum() > 0
    )  # 72 codes pushed, 30 kept

    seen = {}

    class AtEpochStart(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.setdefault(
                epoch, (int(self.model.queue.count.numpy()), self.model.queue.codes.numpy())
            )

    train(
        replace_keys(cfg, {"train.epochs": 2}),
        TrainOptions(
            run_dir=options.run_dir,
            audio_dir=str(audio_dir),
            cache_dir=str(tmp_path / "cache"),
            resume=True,
            verbose=0,
        ),
        extra_callbacks=[AtEpochStart()],
    )
    assert list(seen) == [1]  # only the second epoch ran
    count, codes = seen[1]
    assert count == 30
    np.testing.assert_array_equal(codes, saved)
    assert not np.allclose(
        load_run_model(options.run_dir).queue.codes.numpy(), saved
    )  # and it moved on


def test_a_queue_as_large_as_the_data_is_refused(audio_dir, tmp_path):
    out = run_cli(
        "train",
        "--audio-dir",
        str(audio_dir),
        "--out",
        str(tmp_path / "run"),
        *set_flags(TINY_CPC),
        "--set",
        "model.prediction=all",
        "--set",
        "model.negatives=batch",
        "--set",
        "model.queue_size=5000",
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
    assert "model.queue_size=5000 is not smaller than the" in out.stderr


def test_supervised_trains_the_encoder_with_labels_and_refuses_bad_labels(audio_dir, tmp_path):
    run = tmp_path / "sup"
    out = run_cli(
        "train",
        "--audio-dir",
        str(audio_dir),
        "--out",
        str(run),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--supervised",
        "--labels",
        "folder",
        *set_flags(TINY_CPC),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _history(run / "history.csv")
    assert {"loss", "accuracy"} <= set(rows[0]), rows[0]
    model = keras.saving.load_model(run / "model.keras")
    x = np.random.default_rng(0).normal(size=(3, 6, 800)).astype("float32")
    assert model(x).shape == (3, 16)  # call: the representation, as extract sees it
    assert model.logits(x).shape == (3, 2) and model.classes == ["drums", "strings"]
    # no labels in a flat folder; one class only: one line each, exit 2, no run started
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted(audio_dir.rglob("*.wav"))[:3]:
        (flat / p.name).write_bytes(p.read_bytes())
    for args, needle in (
        (["--audio-dir", str(flat)], "two classes"),
        (["--audio-dir", str(audio_dir), "--labels", r"regex:_(\d)"], "two classes"),
        (["--audio-dir", str(audio_dir), "--labels", "folder"], None),
    ):
        target = tmp_path / f"bad{len(args)}_{needle is None}"
        argv = ["train", *args, "--out", str(target), *set_flags(TINY_CPC)]
        if needle is None:  # --labels without --supervised
            res = run_cli(*argv)
            needle = "for --supervised runs"
        else:
            res = run_cli(*argv[:1], "--supervised", *argv[1:])
        assert res.returncode == 2, res.stderr[-2000:]
        assert len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr, res.stderr
        assert not (target / "config.yaml").exists()  # a retry is a fresh start, not a --resume
