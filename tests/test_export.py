"""`cpc_tf export` (HEAR 2021 module, SavedModel) and `extract --tensorboard`.

The HEAR contract is checked by hand (names, attributes, shapes, dtypes, millisecond
timestamps, batches of 1 and 3, 0.1 s and 60 s), and also with the HEAR validator
(hearvalidator) when it is installed: it imports torch only for PyTorch models, so a
stand-in torch module lets it check this TensorFlow one.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY_CPC
from test_api import _tone, write_run

import cpc_tf
from cpc_tf.cli import main

HEAR_RATE = 16000  # the smallest HEAR rate above the tiny model's 4 kHz


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("export") / "run", TINY_CPC)


@pytest.fixture(scope="module")
def hear_dir(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hear") / "module"
    assert (
        main(
            [
                "export",
                "--run",
                str(run),
                "--format",
                "hear",
                "--out",
                str(out),
                "--name",
                "tiny_hear",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def module(hear_dir: Path) -> Any:
    sys.path.insert(0, str(hear_dir))
    try:
        yield importlib.import_module("tiny_hear")
    finally:
        sys.path.remove(str(hear_dir))
        sys.modules.pop("tiny_hear", None)


def test_hear_folder_is_a_package_with_the_model_copied_in(run, hear_dir, tmp_path):
    assert (hear_dir / "tiny_hear" / "model.keras").read_bytes() == (
        run / "model.keras"
    ).read_bytes()
    assert {p.name for p in hear_dir.iterdir()} >= {
        "pyproject.toml",
        "README.md",
        "cpc_tf_export.json",
        "tiny_hear",
    }
    text = (hear_dir / "pyproject.toml").read_text()
    assert 'dependencies = ["cpc_tf>=' in text and 'packages = ["tiny_hear"]' in text
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(hear_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("tiny_hear-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "tiny_hear/__init__.py" in names and "tiny_hear/model.keras" in names
    # cpc_tf.load opens the exported folder too
    x = _tone(1.5)
    np.testing.assert_allclose(
        cpc_tf.load(hear_dir).embed(x, 4000), cpc_tf.load(run).embed(x, 4000), rtol=1e-5, atol=1e-6
    )


def test_hear_contract_by_hand(module):
    model = module.load_model()
    assert isinstance(model, tf.Module)
    assert model.sample_rate == HEAR_RATE and isinstance(model.sample_rate, int)
    assert model.scene_embedding_size == 16 and isinstance(model.scene_embedding_size, int)
    assert model.timestamp_embedding_size == 16 and isinstance(model.timestamp_embedding_size, int)
    assert module.load_model(module.MODEL_FILE).scene_embedding_size == 16
    rng = np.random.default_rng(0)
    for n in (1, 3):
        for seconds in (0.1, 60.0):
            audio = rng.uniform(-1, 1, (n, int(seconds * HEAR_RATE))).astype(np.float32)
            scene = module.get_scene_embeddings(tf.constant(audio), model)
            assert isinstance(scene, tf.Tensor) and scene.dtype == tf.float32
            assert tuple(scene.shape) == (n, 16)
            emb, stamps = module.get_timestamp_embeddings(audio, model)
            assert emb.dtype == tf.float32 and stamps.dtype == tf.float32
            frames = emb.shape[1]
            assert tuple(emb.shape) == (n, frames, 16) and tuple(stamps.shape) == (n, frames)
            ms = stamps.numpy()
            assert ms[0, 0] == pytest.approx(100.0)  # the centre of the first 200 ms window
            assert ms[:, -1].max() < seconds * 1000 + 100  # no frame starts past the end
            if frames > 1:
                steps = np.diff(ms.astype(np.float64), axis=1)
                np.testing.assert_allclose(steps, 50.0, atol=0.01)  # evenly spaced, <= 50 ms
                assert frames == int(seconds * 1000 // 50)
    with pytest.raises(ValueError, match="2-D"):
        module.get_scene_embeddings(np.zeros(HEAR_RATE, np.float32), model)


def test_hear_validator_passes(module, monkeypatch):
    """The official HEAR 2021 validator, run on the exported module (skipped if not installed)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("torch")
        stand_in.nn = types.SimpleNamespace(Module=type("Module", (), {}))
        stand_in.float32 = "torch.float32"
        stand_in.cuda = types.SimpleNamespace(is_available=lambda: False)
        monkeypatch.setitem(sys.modules, "torch", stand_in)
    validate = pytest.importorskip(
        "hearvalidator.validate", reason="hearvalidator is not installed"
    )
    validate.ValidateModel("tiny_hear", "", device=None)()


def test_export_refuses_a_non_empty_folder_and_keeps_user_files(run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "README.md").write_text("my readme")
    assert main(["export", "--run", str(run), "--format", "hear", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not empty" in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "notes.txt"]
    assert (
        main(["export", "--run", str(run), "--format", "hear", "--out", str(out), "--force"]) == 0
    )
    assert (out / "notes.txt").read_text() == "mine"  # never deleted
    assert "cpc_tf_hear_tiny_cpc" in (out / "README.md").read_text()  # same name: replaced
    assert (out / "cpc_tf_hear_tiny_cpc" / "model.keras").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-export-")]
    assert main(["export", "--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err
    assert (
        main(["export", "--run", str(run), "--out", str(tmp_path / "y"), "--name", "Bad-Name"]) == 2
    )


def test_savedmodel_export_serves_the_representation(run, tmp_path):
    out = tmp_path / "sm"
    assert main(["export", "--run", str(run), "--format", "savedmodel", "--out", str(out)]) == 0
    assert (out / "saved_model.pb").is_file() and (out / "variables").is_dir()
    embedder = cpc_tf.load(run)
    x = np.random.default_rng(1).normal(0, 0.1, (2, 6, 800)).astype(np.float32)  # [B, T+k, W]
    loaded = tf.saved_model.load(str(out))  # held: the endpoint's variables live on it
    served = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(served, embedder.model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_extract_tensorboard_projector(run, tmp_path):
    import soundfile as sf

    from cpc_tf.extract import ExtractOptions, extract

    audio = tmp_path / "audio"
    for label in ("low", "high"):
        (audio / label).mkdir(parents=True)
        for i in range(2):
            sf.write(
                audio / label / f"{i}.wav",
                _tone(1.5 + i, f0=200 if label == "low" else 900, seed=i),
                4000,
            )
    embedder = cpc_tf.load(run)
    board = tmp_path / "board"
    payload = extract(
        embedder.config,
        embedder.model,
        ExtractOptions(
            str(audio),
            str(tmp_path / "e.npz"),
            labels="folder",
            cache_dir=str(tmp_path / "cache"),
            progress=False,
            tensorboard=str(board),
        ),
    )
    n = len(payload["embeddings"])
    config = (board / "projector_config.pbtxt").read_text()
    assert (
        'metadata_path: "metadata.tsv"' in config
        and "embedding/.ATTRIBUTES/VARIABLE_VALUE" in config
    )
    rows = (board / "metadata.tsv").read_text().splitlines()
    assert rows[0] == "label\tpath\tcrop_start\tcrop_end" and len(rows) == n + 1
    first = rows[1].split("\t")
    assert first[0] == payload["labels"][0] and first[1] == payload["paths"][0]
    assert float(first[3]) - float(first[2]) == pytest.approx(1.2, abs=1e-3)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(board)))
    np.testing.assert_allclose(
        reader.get_tensor("embedding/.ATTRIBUTES/VARIABLE_VALUE"), payload["embeddings"]
    )
