"""The public Python API: cpc_tf.load, Embedder.embed / embed_frames / embed_file, bad input,
and agreement with `cpc_tf extract`.

One tiny random-init CPC run folder (config.yaml + model.keras) is written once per
module; the CLI runs once, for the extract-versus-API check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from helpers import TINY_CPC, TINY_SIMCLR, run_cli, tiny_config

import cpc_tf
from cpc_tf.config import dump_config
from cpc_tf.fileio import atomic_write_text
from cpc_tf.inference import ModelRunner, chunk_plan, pool_groups

RATE = TINY_CPC["data"]["sample_rate"]  # 4000 Hz; chunks of 1.2 s = 4800 samples of 6 windows


def _tone(seconds: float, rate: int = RATE, f0: float = 220.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.normal(size=t.size)).astype(np.float32)


def write_run(root: Path, base: dict, **sections: dict) -> Path:
    """A run folder of a random-init model: config.yaml and model.keras."""
    from cpc_tf.references import random_init_model

    cfg = tiny_config(base, **sections)
    model = random_init_model(cfg)
    root.mkdir(parents=True)
    atomic_write_text(str(root / "config.yaml"), dump_config(cfg))
    model.save(str(root / "model.keras"))
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("api") / "run", TINY_CPC)


@pytest.fixture(scope="module")
def embedder(run: Path) -> Any:
    return cpc_tf.load(run)


# ------------------------------------------------------------------ loading
def test_import_is_lazy():
    code = (
        "import sys, cpc_tf; assert 'tensorflow' not in sys.modules; "
        "assert callable(cpc_tf.load) and cpc_tf.Embedder.__name__ == 'Embedder'; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; print('lazy')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0 and "lazy" in out.stdout, out.stderr[-2000:]


def test_load_a_run_a_keras_file_and_the_facts(run, embedder):
    assert embedder.sample_rate == RATE and embedder.embedding_size == TINY_CPC["model"]["c_dim"]
    assert embedder.chunk_samples == 4800 and embedder.frame_kinds == ("c", "z")
    assert embedder.frame_hop_seconds == pytest.approx(0.2)  # one 800-sample window
    from_file = cpc_tf.load(run / "model.keras")
    x = _tone(2.0)
    np.testing.assert_allclose(
        from_file.embed(x, RATE), embedder.embed(x, RATE), rtol=1e-5, atol=1e-6
    )
    assert "tiny_cpc" in repr(embedder)


def test_load_refuses_what_is_not_a_model(run, tmp_path):
    import keras

    with pytest.raises(ValueError, match="no config.yaml.*no cpc_tf_export.json"):
        cpc_tf.load(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        cpc_tf.load(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a .keras model"):
        cpc_tf.load(tmp_path / "notes.txt")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(ValueError, match="holds a Sequential.*not a cpc_tf model"):
        cpc_tf.load(tmp_path / "plain.keras")

    @keras.saving.register_keras_serializable(package="other_project")
    class Foreign(keras.layers.Layer):
        def call(self, x):
            return x

    foreign = keras.Sequential([keras.Input((4,)), Foreign()])
    foreign.save(tmp_path / "foreign.keras")
    del keras.saving.get_custom_objects()[
        "other_project>Foreign"
    ]  # as in a session without that project
    with pytest.raises(
        ValueError, match="not a loadable cpc_tf model: it names the class .Foreign."
    ):
        cpc_tf.load(tmp_path / "foreign.keras")
    encoder = cpc_tf.load(run).model.encoder
    encoder.save(tmp_path / "encoder.keras")
    with pytest.raises(ValueError, match="encoder alone"):
        cpc_tf.load(tmp_path / "encoder.keras")


# ------------------------------------------------------------------ clip embeddings
def test_embed_pools_chunks_by_their_real_length(embedder):
    x = _tone(2.9)  # chunks of 4800, 4800 and 2000 real samples
    runner = ModelRunner(embedder.model, embedder.config)
    starts, valid = chunk_plan(len(x), 4800)
    assert starts.tolist() == [0, 4800, 9600] and valid.tolist() == [4800, 4800, 2000]
    chunks = np.zeros((3, 4800), np.float32)
    for i, s in enumerate(starts):
        chunks[i, : valid[i]] = x[s : s + 4800]
    rows = runner.embed(chunks)
    expected = (rows * valid[:, None]).sum(0) / valid.sum()
    got = embedder.embed(x, RATE)
    assert got.shape == (16,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    looped = chunks.copy()
    looped[2, 2000:] = x[:2800]  # what looping the last chunk would have embedded
    assert not np.allclose(got, runner.embed(looped).mean(0), atol=1e-4)

    batch = np.stack([x, x[::-1].copy(), 0.5 * x])
    out = embedder.embed(batch, RATE)
    assert out.shape == (3, 16)
    for i in range(3):
        np.testing.assert_allclose(out[i], embedder.embed(batch[i], RATE), rtol=1e-5, atol=1e-6)
    tiny = _tone(0.05)  # 200 samples: looped to fill its one chunk, as in training (loop policy)
    np.testing.assert_allclose(
        embedder.embed(tiny, RATE), runner.embed(np.tile(tiny, 24)[None])[0], rtol=1e-5, atol=1e-6
    )


def test_pool_groups_weighs_rows():
    values = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    ids, pooled, first = pool_groups(
        values, np.array([7, 7, 2]), np.array([1.0, 3.0, 2.0]), "mean_std"
    )
    assert ids.tolist() == [2, 7] and first.tolist() == [2, 0]
    np.testing.assert_allclose(pooled[1], [2.5, 1.5, np.sqrt(0.75), np.sqrt(0.75)], rtol=1e-6)
    np.testing.assert_allclose(pooled[0], [5.0, 5.0, 0.0, 0.0])


def test_other_rates_and_integer_pcm(embedder):
    x = _tone(2.0)
    ref = embedder.embed(x, RATE)
    hi = _tone(2.0, rate=16000)
    np.testing.assert_allclose(embedder.embed(hi, 16000), ref, atol=0.05 * np.abs(ref).max())
    pcm16 = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(
        embedder.embed(pcm16, RATE), embedder.embed(pcm16 / 32768.0, RATE), atol=1e-5
    )
    pcm32 = pcm16.astype(np.int32) << 16
    np.testing.assert_allclose(embedder.embed(pcm32, RATE), embedder.embed(pcm16, RATE), atol=1e-5)
    u8 = (np.round(x * 127) + 128).astype(np.uint8)
    np.testing.assert_allclose(
        embedder.embed(u8, RATE), embedder.embed((u8 - 128.0) / 128.0, RATE), atol=1e-5
    )
    assert embedder.embed(x.tolist(), float(RATE)).shape == (16,)  # lists and whole-number floats


@pytest.mark.parametrize(
    "audio, rate, message",
    [
        (np.zeros(0, np.float32), RATE, "empty"),
        (np.zeros((0, 4000), np.float32), RATE, "empty"),
        (
            np.array([0.1, np.nan, 0.2, np.inf], np.float32),
            RATE,
            r"2 NaN/Inf sample\(s\), the first in sound 0 at sample 1",
        ),
        (np.zeros((8000, 2), np.float32), RATE, r"looks like \[samples, channels\]"),
        (np.zeros((2, 3, 4000), np.float32), RATE, "1-D .* or 2-D"),
        (np.zeros(4000, np.complex64), RATE, "dtype complex64"),
        (np.array(["a", "b"]), RATE, "dtype <U1"),
        (np.full(4000, 20000.0, np.float32), RATE, "integer PCM stored as float"),
        (np.zeros(4000, np.float32), 0, "positive whole number"),
        (np.zeros(4000, np.float32), 44100.5, "positive whole number"),
        (np.zeros(4000, np.float32), "fast", "number of Hz"),
        ([[0.1, 0.2], [0.3]], RATE, "rectangular|numeric"),
    ],
)
def test_bad_audio_is_a_clear_value_error(embedder, audio, rate, message):
    from cpc_tf.errors import CpcTfError

    with pytest.raises(ValueError, match=message) as info:
        embedder.embed(audio, rate)
    assert isinstance(info.value, CpcTfError) and "\n" not in str(info.value)


# ------------------------------------------------------------------ frames
def test_embed_frames_kinds_times_and_padding(embedder):
    x = _tone(2.9)  # 11,600 samples: frames of 800 samples, the last real one starts at 11,200
    frames, times = embedder.embed_frames(x, RATE)
    assert frames.shape == (15, 16) and times.shape == (15,)
    np.testing.assert_allclose(times, (np.arange(15) * 800 + 400) / RATE)
    z, z_times = embedder.embed_frames(np.stack([x, x]), RATE, kind="z")
    assert z.shape == (2, 15, 16) and z_times.shape == (2, 15)
    np.testing.assert_allclose(z[0], z[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(frames, z[0], atol=1e-3)  # c_t is not z_t

    fine, fine_times = embedder.embed_frames(x, RATE, hop_seconds=0.05, kind="z")
    steps = np.diff(fine_times)
    np.testing.assert_allclose(steps, 0.05, atol=1e-9)  # 800 / 4 = 200 samples exactly
    assert fine_times[0] == pytest.approx(0.1) and fine_times[-1] * RATE - 400 < len(x)
    # each interleaved z frame is the code of the 800-sample window around its time
    runner = ModelRunner(embedder.model, embedder.config)
    for m in (1, 6, 23, len(fine_times) - 1):
        start = round(fine_times[m] * RATE) - 400
        chunk = np.zeros((1, 4800), np.float32)
        window = x[start : start + 800]
        chunk[0, : len(window)] = window
        np.testing.assert_allclose(fine[m], runner.frames(chunk, "z")[0, 0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="hop_seconds must be positive"):
        embedder.embed_frames(x, RATE, hop_seconds=0)
    with pytest.raises(ValueError, match="kind='map' is not available"):
        embedder.embed_frames(x, RATE, kind="map")
    one, one_times = embedder.embed_frames(_tone(0.01), RATE)  # 40 samples: still one frame
    assert one.shape == (1, 16) and one_times.tolist() == [0.1]


def test_frames_of_a_transformer_cpc_and_of_simclr(tmp_path):
    from cpc_tf.references import random_init_model

    cfg = tiny_config(TINY_CPC, model={"autoregressor": "transformer"})
    transformer = cpc_tf.Embedder(random_init_model(cfg), cfg)
    assert transformer.frame_kinds == ("z",) and transformer.default_frame_kind == "z"
    with pytest.raises(ValueError, match="gives only c_T"):
        transformer.embed_frames(_tone(1.0), RATE, kind="c")
    cfg = tiny_config(TINY_SIMCLR)
    simclr = cpc_tf.Embedder(random_init_model(cfg), cfg)
    assert simclr.frame_kinds == ("map",) and simclr.embedding_size == 16
    frames, times = simclr.embed_frames(_tone(1.0, rate=8000), 8000)
    assert frames.shape == (4, 16) and simclr.frame_size() == 16  # 8000 samples, one step per 2187
    np.testing.assert_allclose(times, (np.arange(4) * 2187 + 1093.5) / 8000)


# ------------------------------------------------------------------ files, memory, extract
def test_embed_file_uses_the_project_reader(embedder, tmp_path):
    x = _tone(1.7, rate=8000)
    sf.write(tmp_path / "a.wav", x, 8000, subtype="PCM_16")
    got = embedder.embed_file(tmp_path / "a.wav")
    assert got.shape == (16,)
    np.testing.assert_allclose(
        got, embedder.embed(sf.read(tmp_path / "a.wav", dtype="float32")[0], 8000), atol=1e-3
    )
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))
    with pytest.raises(ValueError, match="bad.wav: corrupt"):
        embedder.embed_file(tmp_path / "bad.wav")


def test_long_audio_goes_through_in_bounded_batches(run, monkeypatch):
    small = cpc_tf.load(run, batch_size=5)
    seen: list[int] = []
    original = ModelRunner.run

    def spy(self: ModelRunner, crops: Any, what: str) -> dict[str, np.ndarray]:
        seen.append(int(np.shape(crops)[0]))
        return original(self, crops, what)

    assert (
        small.frame_size("c") == small.embedding_size == 16
    )  # the shape probes, done before counting
    monkeypatch.setattr(ModelRunner, "run", spy)
    small.embed(_tone(60.0), RATE)  # 50 chunks
    assert max(seen) <= 5 and sum(seen) == 50
    seen.clear()
    small.embed_frames(_tone(60.0), RATE, hop_seconds=0.1)  # two shifted runs
    assert max(seen) <= 5 and sum(seen) == 50 + 50


def test_cli_extract_and_the_api_agree(run, embedder, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    lengths = {"short.wav": 0.5, "exact.wav": 1.2, "partial.wav": 2.9, "long.wav": 4.1}
    for i, (name, seconds) in enumerate(lengths.items()):
        sf.write(audio / name, _tone(seconds, seed=i, f0=150 + 100 * i), RATE, subtype="PCM_16")
    out = tmp_path / "pooled.npz"
    res = run_cli(
        "extract",
        "--run",
        str(run),
        "--audio-dir",
        str(audio),
        "--out",
        str(out),
        "--crop-mode",
        "sliding",
        "--pool",
        "mean",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    with np.load(out) as npz:
        rows = dict(zip(npz["paths"].tolist(), npz["embeddings"]))
    assert sorted(rows) == sorted(lengths)
    for name in lengths:
        np.testing.assert_allclose(
            rows[name], embedder.embed_file(audio / name), rtol=1e-4, atol=1e-5
        )
