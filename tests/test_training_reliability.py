"""`train` when things go wrong: a user's folder, a full disk, Ctrl-C, an edited config, disk
use.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import yaml
from helpers import TINY_CPC, run_cli, set_flags, synth_folder, tiny_config

from cpc_tf.errors import DiskSpaceError
from cpc_tf.fileio import TEMP_PREFIX
from cpc_tf.training import TrainOptions, history_rows, train


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    return synth_folder(tmp_path_factory.mktemp("audio"), files=4)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _options(run, audio_dir, cache_dir, **kw) -> TrainOptions:
    return TrainOptions(
        run_dir=str(run), audio_dir=str(audio_dir), cache_dir=str(cache_dir), verbose=0, **kw
    )


def _state(run) -> dict:
    return json.loads((run / "run.json").read_text())


def _temps(root) -> list[str]:
    return [str(p) for p in root.rglob(f"{TEMP_PREFIX}*")]


def test_train_refuses_a_users_folder_unless_forced(audio_dir, cache_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    files = {
        "model.keras": "my model",
        "history.csv": "my,history\n",
        "run.json": '{"mine": 1}',
        ".tmp-draft": "my draft",
    }
    for name, text in files.items():
        (mine / name).write_text(text)
    out = run_cli("train", "--audio-dir", str(audio_dir), "--out", str(mine), *set_flags(TINY_CPC))
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(out.stderr.strip().splitlines()) == 1 and "not a cpc_tf run folder" in out.stderr
    assert "--force" in out.stderr
    assert {
        p.name: p.read_text() for p in mine.iterdir()
    } == files  # nothing touched, nothing added
    resume = run_cli("train", "--out", str(mine), "--resume")
    assert resume.returncode == 2 and "not a cpc_tf run folder" in resume.stderr
    assert (mine / ".tmp-draft").read_text() == "my draft"
    # --force writes into it anyway (and the folder becomes a run)
    train(
        tiny_config(TINY_CPC, train={"epochs": 1}), _options(mine, audio_dir, cache_dir, force=True)
    )
    assert _state(mine)["status"] == "finished" and _state(mine)["cpc_tf_run"] == 1
    assert (mine / ".tmp-draft").read_text() == "my draft"


def test_a_disk_too_full_for_a_checkpoint_fails_cleanly(
    audio_dir, cache_dir, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    real = shutil.disk_usage

    def nearly_full(path):
        usage = real(path)
        if str(path).startswith(str(run)):
            return usage._replace(free=1_000_000)
        return usage

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    with pytest.raises(DiskSpaceError) as info:
        train(tiny_config(TINY_CPC), _options(run, audio_dir, cache_dir))
    message = str(info.value)
    assert "\n" not in message and "not enough disk space" in message and "1.0 MB free" in message
    assert "0 completed epoch(s) are kept" in message and "--resume" in message
    state = _state(run)
    assert (
        state["status"] == "failed"
        and state["epochs_completed"] == 0
        and "disk space" in state["reason"]
    )
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").glob("epoch_*"))
    assert _temps(run) == []


def test_enospc_during_a_checkpoint_write_fails_cleanly(
    audio_dir, cache_dir, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    real_save = keras.Model.save_weights
    calls = []

    def save_weights(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:  # epoch 1: checkpoint, backup; epoch 2: checkpoint -> disk full
            with open(path, "wb") as fh:
                fh.write(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", save_weights)
    with pytest.raises(DiskSpaceError, match=r"the disk is full .*1 completed epoch\(s\) are kept"):
        train(tiny_config(TINY_CPC), _options(run, audio_dir, cache_dir))
    state = _state(run)
    assert (
        state["status"] == "failed"
        and state["epochs_completed"] == 1
        and "disk is full" in state["reason"]
    )
    assert sorted(os.listdir(run / "checkpoints")) == ["backup", "epoch_001.weights.h5"]
    assert _temps(run) == []  # the half-written file went with its temporary name


def test_keep_checkpoints_keeps_the_last_and_the_best_and_resume_still_works(
    audio_dir, cache_dir, tmp_path
):
    run = tmp_path / "run"
    cfg = tiny_config(TINY_CPC, train={"epochs": 4, "keep_checkpoints": 2})
    train(cfg, _options(run, audio_dir, cache_dir))
    losses = [r["loss"] for r in history_rows(str(run))]
    best = 1 + losses.index(min(losses))
    kept = {f"epoch_{n:03d}.weights.h5" for n in (3, 4, best)}
    assert set(os.listdir(run / "checkpoints")) == kept | {"backup"}
    train(
        tiny_config(TINY_CPC, train={"epochs": 5, "keep_checkpoints": 2}),
        _options(run, audio_dir, cache_dir, resume=True),
    )
    losses = [r["loss"] for r in history_rows(str(run))]
    assert len(losses) == 5 and _state(run)["epochs_completed"] == 5
    best = 1 + losses.index(min(losses))
    assert set(os.listdir(run / "checkpoints")) == {
        f"epoch_{n:03d}.weights.h5" for n in (4, 5, best)
    } | {"backup"}


def test_log_every_steps_writes_per_step_scalars(audio_dir, cache_dir, tmp_path):
    import tensorflow as tf

    run = tmp_path / "run"
    train(
        tiny_config(TINY_CPC, train={"epochs": 2, "steps_per_epoch": 3, "log_every_steps": 2}),
        _options(run, audio_dir, cache_dir),
    )
    steps = {}
    for path in (run / "tensorboard" / "train").glob("events*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag.startswith("batch_"):
                    steps.setdefault(value.tag, []).append(event.step)
                    assert np.isfinite(float(tf.make_ndarray(value.tensor)))
    assert sorted(steps["batch_loss"]) == [2, 4, 6]  # global steps over both epochs
    assert "batch_cpc_acc" in steps


def _wait_for_epochs(proc, run, epochs, timeout=300):
    """Wait until the run's backup records `epochs` completed epochs (what --resume continues
    from).
    """
    from cpc_tf.training.callbacks import completed_epochs

    deadline = time.time() + timeout
    while time.time() < deadline:
        if completed_epochs(str(run / "checkpoints" / "backup")) >= epochs:
            return
        if proc.poll() is not None:
            pytest.fail("training ended before it could be interrupted")
        time.sleep(0.05)
    pytest.fail("no epoch finished in time")


def test_ctrl_c_then_an_edited_config_then_resume(audio_dir, cache_dir, tmp_path):
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
        str(cache_dir),
        *flags,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_epochs(proc, run, 1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    state = _state(run)
    done = state["epochs_completed"]
    assert state["status"] == "interrupted" and 1 <= done < 5
    assert len(history_rows(str(run))) >= done
    assert stderr.strip().splitlines()[-1] == (
        f"cpc_tf: interrupted after epoch {done}; resume with: cpc_tf train --out {run} --resume"
    )
    assert "Traceback" not in stderr

    # an edited model is refused in one line, and the run stays interrupted
    original = (run / "config.yaml").read_text()
    edited = yaml.safe_load(original)
    edited["model"]["c_dim"] = 32
    (run / "config.yaml").write_text(yaml.safe_dump(edited))
    refused = run_cli("train", "--out", str(run), "--resume", "--cache-dir", str(cache_dir))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, (
        refused.stderr[-2000:]
    )
    assert "model.c_dim: 16 -> 32" in refused.stderr
    assert _state(run)["status"] == "interrupted"

    (run / "config.yaml").write_text(original)
    resumed = run_cli("train", "--out", str(run), "--resume", "--cache-dir", str(cache_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at epoch {done + 1} of 5" in resumed.stdout
    after = _state(run)
    assert after["status"] == "finished" and after["epochs_completed"] == 5
    assert after["started"] == state["started"] and after["resumed"] > state["started"]
    assert [int(r["epoch"]) for r in history_rows(str(run))] == [0, 1, 2, 3, 4]


def test_short_clip_note_names_the_fraction_and_the_setting():
    from cpc_tf.audio.datasets import short_clip_note

    cfg = tiny_config(TINY_CPC)  # 4800-sample crops
    lengths = {0: 1000, 1: 2000, 2: 3000, 3: 9000}
    cache = SimpleNamespace(clip=lambda i: SimpleNamespace(num_samples=lengths[i]))
    note = short_clip_note(cfg, cache, [0, 1, 2, 3], (6, 800))
    assert note is not None and "3 of 4 training files (75%)" in note and "looped" in note
    assert "data.clip_seconds=1.2" in note
    assert short_clip_note(cfg, cache, [0, 1, 3], (6, 800)) is not None
    assert short_clip_note(cfg, cache, [0, 3], (6, 800)) is None  # half is not most


def test_progress_bar_only_on_a_terminal(monkeypatch):
    from cpc_tf.training.loop import progress_verbosity

    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert progress_verbosity(1) == 2 and progress_verbosity(0) == 0
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert progress_verbosity(1) == 1


def test_tune_refuses_a_users_folder(tmp_path, capsys):
    from cpc_tf.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.md").write_text("my results")
    code = main(
        ["tune", "--audio-dir", str(tmp_path), "--config", "no_such_sweep.yaml", "--out", str(mine)]
    )
    err = capsys.readouterr().err
    assert (
        code == 2 and len(err.strip().splitlines()) == 1 and "not a cpc_tf sweep folder" in err
    ), err
    assert os.listdir(mine) == ["results.md"] and (mine / "results.md").read_text() == "my results"
    # with --force the folder is accepted (here the missing sweep file is the next, different error)
    code = main(
        [
            "tune",
            "--audio-dir",
            str(tmp_path),
            "--config",
            "no_such_sweep.yaml",
            "--out",
            str(mine),
            "--force",
        ]
    )
    assert code != 0 and "not a cpc_tf sweep folder" not in capsys.readouterr().err
