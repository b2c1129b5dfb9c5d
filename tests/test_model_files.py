"""A .keras file that cannot be loaded is one line that says why, for extract and the API alike."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import TINY_CPC, synth_folder, tiny_config

import cpc_tf
from cpc_tf.cli import main
from cpc_tf.config import dump_config
from cpc_tf.errors import DataError, InputError
from cpc_tf.models.saving import load_keras_file


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    root.mkdir()
    (root / "config.yaml").write_text(dump_config(tiny_config(TINY_CPC)))
    return root


def _lambda_model(path: Path) -> Path:
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    keras.Model(inputs, outputs).save(path)
    return path


def test_each_unloadable_file_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "model.keras"
    folder.mkdir()
    with pytest.raises(DataError, match=r"model.keras is a folder, not a .keras file$"):
        load_keras_file(str(folder))
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(DataError, match=r"not a .keras file \(not a zip archive: truncated\?\)"):
        load_keras_file(str(truncated))
    with pytest.raises(DataError, match="holds a Lambda layer"):
        load_keras_file(str(_lambda_model(tmp_path / "lambda.keras")))
    with pytest.raises(InputError, match="is not a loadable cpc_tf model: it holds a Lambda layer"):
        cpc_tf.load(tmp_path / "lambda.keras")


def test_extract_from_a_run_with_a_bad_model_file_is_one_line(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = synth_folder(tmp_path / "audio", files=1, seconds=1.0, rate=8000)
    argv = [
        "extract",
        "--run",
        str(run),
        "--audio-dir",
        str(audio),
        "--out",
        str(tmp_path / "e.npz"),
    ]
    _lambda_model(run / "model.keras")
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cpc_tf: error: ") and "Lambda layer" in err[0], err
    (run / "model.keras").unlink()
    (run / "model.keras").write_bytes(np.zeros(64, np.uint8).tobytes())
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"cpc_tf: error: {run / 'model.keras'} is not a .keras file (not a zip archive: truncated?)"
    ]
    assert not (tmp_path / "e.npz").exists()
