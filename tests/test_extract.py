"""`cpc_tf extract`: the embeddings.npz contract, crops, short and broken files, streaming.

One tiny CPC is trained once per module (CLI) and reused; the other checks call the
library in-process with a freshly built tiny model, which costs no TensorFlow start-up.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
import yaml
from helpers import TINY_CPC, TINY_SIMCLR, run_cli, set_flags, tiny_config

from cpc_tf.audio.cache import open_cache, parse_record
from cpc_tf.config import Config, load_config, resolve_config_path
from cpc_tf.errors import ConfigError
from cpc_tf.extract import (
    ExtractOptions,
    crop_dataset,
    extract,
    extract_embeddings,
    model_input_length,
)

CONTRACT_KEYS = {"embeddings", "paths", "labels", "crop_start", "clip_index", "run", "model"}
EXTRA_KEYS = {
    "config",
    "skipped_paths",
    "skipped_reasons",
    "audio_dir",
    "label_source",
    "crop_start_unit",
}
RATE = 8000  # rate of the files on disk
MODEL_RATE = TINY_CPC["data"]["sample_rate"]
TINY_SECONDS = 0.1  # the short clip: far below the 1.2 s tiny crop and the 4 s seed crop
# class -> files as (digit, speaker, seconds); lengths are chosen so sliding mode has
# one, two and three chunks of the 1.2 s tiny crop
LAYOUT = {
    "low": [(1, "ann", 2.0), (2, "bob", 1.5), (3, "ann", 3.1), (1, "bob", 2.0)],
    "high": [(4, "ann", 2.0), (5, "bob", 1.5), (6, "ann", 3.1), (4, "bob", 2.0)],
}


def _tone(cls: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A class-specific harmonic tone with a random pitch and a little noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = rng.uniform(150, 250) if cls == "low" else rng.uniform(900, 1300)
    x = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in (1, 2, 3))
    return (0.3 * x / 1.8 + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def make_folder(root: Path) -> Path:
    """Labelled tones in class folders, names `{digit}_{speaker}_{i}.wav`, one 0.1 s clip,
    one corrupt .wav and a CSV of labels."""
    rng = np.random.default_rng(0)
    for cls, files in LAYOUT.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, (digit, speaker, seconds) in enumerate(files):
            sf.write(root / cls / f"{digit}_{speaker}_{i}.wav", _tone(cls, seconds, rng), RATE)
    sf.write(root / "low" / "7_cat_9.wav", _tone("low", TINY_SECONDS, rng), RATE)
    (root / "high" / "8_cat_9.wav").write_bytes(
        b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40)
    )  # corrupt
    (root / "labels.csv").write_text("path,label\nlow/1_ann_0.wav,a;b\nhigh/4_ann_0.wav,c\n")
    return root


def _durations(audio_dir: Path) -> dict[str, float]:
    """Duration in seconds of every decodable file, by relative path."""
    return {
        str(p.relative_to(audio_dir)).replace(os.sep, "/"): sf.info(str(p)).duration
        for p in audio_dir.rglob("*.wav")
        if p.name != "8_cat_9.wav"
    }


def _cfg(**sections: dict[str, Any]) -> Config:
    """TINY_CPC with in-process decoding and the given section overrides."""
    base = {"data": {"decode_workers": 1}}
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return tiny_config(TINY_CPC, **base)


def _model(cfg: Config) -> Any:
    """A freshly built (random-init, seeded) model of `cfg`."""
    import keras

    from cpc_tf.models.factory import build_model

    keras.utils.set_random_seed(0)
    return build_model(cfg)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _cached_audio(cache: Any) -> dict[str, np.ndarray]:
    """Each clip's decoded audio as the cache stores it (float32 at the model rate)."""
    parts: dict[str, list[tuple[int, np.ndarray]]] = {}
    for rec in tf.data.TFRecordDataset(cache.shard_paths).map(parse_record):
        parts.setdefault(rec["path"].numpy().decode(), []).append(
            (int(rec["offset"]), rec["audio"].numpy())
        )
    return {
        p: np.concatenate([a for _, a in sorted(v, key=lambda x: x[0])]) for p, v in parts.items()
    }


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("extract") / "audio")


@pytest.fixture(scope="module")
def trained(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny CPC trained by the CLI, and its embeddings (3 crops per file, frame level)."""
    work = tmp_path_factory.mktemp("trained")
    run, cache = work / "run", work / "cache"
    out = run_cli(
        "train",
        "--audio-dir",
        str(folder),
        "--out",
        str(run),
        "--cache-dir",
        str(cache),
        *set_flags(TINY_CPC),
        "--set",
        "data.decode_workers=1",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    npz = work / "trained.npz"
    res = run_cli(
        "extract",
        "--run",
        str(run),
        "--audio-dir",
        str(folder),
        "--out",
        str(npz),
        "--crops-per-file",
        "3",
        "--labels",
        "folder",
        "--frame-level",
        "--cache-dir",
        str(cache),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return {"run": run, "cache": cache, "npz": npz, "log": res.stdout, "work": work}


# ------------------------------------------------------------------ the contract
def test_cli_npz_follows_the_contract(trained, folder):
    d = _load(trained["npz"])
    assert set(d) == CONTRACT_KEYS | EXTRA_KEYS | {"frames", "frame_times"}
    n = d["embeddings"].shape[0]
    assert d["embeddings"].dtype == np.float32 and d["embeddings"].ndim == 2
    assert d["embeddings"].shape[1] == TINY_CPC["model"]["c_dim"]
    assert np.isfinite(d["embeddings"]).all()
    for key in ("paths", "labels", "crop_start", "clip_index"):
        assert d[key].shape == (n,), key
    assert d["paths"].dtype.kind == "U" and d["labels"].dtype.kind == "U"
    assert d["crop_start"].dtype == np.float32
    assert np.issubdtype(d["clip_index"].dtype, np.integer)
    assert d["run"].shape == () and d["run"].item() == str(trained["run"].resolve())
    assert "tiny_cpc" in d["model"].item()
    assert yaml.safe_load(d["config"].item())["name"] == "tiny_cpc"
    assert d["crop_start_unit"].item() == "seconds"

    durations = _durations(folder)
    # paths: relative to the audio folder, every decodable file present, 3 rows each
    assert set(d["paths"].tolist()) == set(durations)
    for p in d["paths"].tolist():
        assert not os.path.isabs(p) and not p.startswith("./") and (folder / p).is_file()
    files, counts = np.unique(d["paths"], return_counts=True)
    assert (counts == 3).all(), dict(zip(files, counts))
    # labels from the folder layout
    assert all(lab == p.split("/")[0] for p, lab in zip(d["paths"].tolist(), d["labels"].tolist()))
    # clip_index: one index per path and one path per index, rows grouped by file
    pairs = set(zip(d["clip_index"].tolist(), d["paths"].tolist()))
    assert len(pairs) == len(files) == len({i for i, _ in pairs})
    assert (np.diff(d["clip_index"]) >= 0).all()
    # crop_start: seconds, inside the file; a full-length crop ends inside the file
    crop_s = model_input_length(tiny_config(TINY_CPC)) / MODEL_RATE
    for p, start in zip(d["paths"].tolist(), d["crop_start"].tolist()):
        assert 0.0 <= start < durations[p], (p, start)
        if durations[p] >= crop_s:
            assert start + crop_s <= durations[p] + 1e-3, (p, start)
    # the corrupt file is listed with its reason, and the summary line counts it
    assert d["skipped_paths"].tolist() == ["high/8_cat_9.wav"]
    assert d["skipped_reasons"].tolist() == ["corrupt"]
    assert "1 file skipped" in trained["log"] and f"from {len(files)} files" in trained["log"]
    assert "skipped, corrupt (1): high/8_cat_9.wav" in trained["log"]


def test_frame_level_features_for_cpc(trained):
    d = _load(trained["npz"])
    steps = TINY_CPC["model"]["context_steps"] + TINY_CPC["model"]["predict_steps"]
    assert d["frames"].shape == (len(d["embeddings"]), steps, TINY_CPC["model"]["z_dim"])
    assert d["frames"].dtype == np.float32 and np.isfinite(d["frames"]).all()
    window_s = tiny_config(TINY_CPC).window_samples / MODEL_RATE
    np.testing.assert_allclose(d["frame_times"], np.arange(steps) * window_s, rtol=1e-6)


def test_frame_level_is_refused_for_simclr():
    cfg = tiny_config(TINY_SIMCLR, eval={"frame_level": True})
    with pytest.raises(ConfigError, match="frame"):
        extract_embeddings(None, cfg, None)


def test_bad_input_is_one_line(trained, folder, tmp_path):
    res = run_cli(
        "extract",
        "--random-init",
        "--config",
        "cpc_conv1d_gru",
        "--audio-dir",
        str(tmp_path / "missing"),
        "--out",
        str(tmp_path / "x.npz"),
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr

    from cpc_tf.cli import build_parser
    from cpc_tf.commands import extract as extract_command
    from cpc_tf.errors import CpcTfError

    def fails(*argv: str) -> CpcTfError:
        with pytest.raises(CpcTfError) as info:
            extract_command(
                build_parser().parse_args(["extract", *argv, "--out", str(tmp_path / "x.npz")])
            )
        return info.value

    err = fails("--random-init", "--audio-dir", str(tmp_path))
    assert err.exit_code == 2 and "--config" in str(err)
    err = fails("--run", str(trained["run"]), "--audio-dir", str(folder), "--labels", "regex:(")
    assert err.exit_code == 2 and "bad regex" in str(err)
    err = fails("--run", str(trained["run"]), "--audio-dir", str(folder), "--set", "model.c_dim=8")
    assert err.exit_code == 2 and "model.c_dim" in str(err)


def test_regex_and_csv_labels(folder, tmp_path):
    cfg = _cfg()
    model = _model(cfg)
    opts = dict(cache_dir=str(tmp_path / "cache"), progress=False)
    digits = extract(
        cfg,
        model,
        ExtractOptions(str(folder), str(tmp_path / "r.npz"), labels=r"regex:^(\d)_", **opts),
    )
    assert all(
        lab == os.path.basename(p)[0]
        for p, lab in zip(digits["paths"].tolist(), digits["labels"].tolist())
    )
    tagged = extract(
        cfg,
        model,
        ExtractOptions(str(folder), str(tmp_path / "c.npz"), labels="csv:labels.csv", **opts),
    )
    by_path = dict(zip(tagged["paths"].tolist(), tagged["labels"].tolist()))
    assert by_path["low/1_ann_0.wav"] == "a;b" and by_path["high/4_ann_0.wav"] == "c"
    assert by_path["low/2_bob_1.wav"] == ""  # not listed: unlabelled, still extracted
    np.testing.assert_array_equal(
        digits["embeddings"], tagged["embeddings"]
    )  # labels change nothing else


# ------------------------------------------------------------------ crops
def test_crops_per_file_and_seed(folder, tmp_path):
    cfg = _cfg(eval={"crops_per_file": 5})
    model = _model(cfg)
    opts = dict(cache_dir=str(tmp_path / "cache"), progress=False)
    a = extract(cfg, model, ExtractOptions(str(folder), str(tmp_path / "a.npz"), **opts))
    b = extract(cfg, model, ExtractOptions(str(folder), str(tmp_path / "b.npz"), **opts))
    _, counts = np.unique(a["paths"], return_counts=True)
    assert (counts == 5).all()
    np.testing.assert_array_equal(a["crop_start"], b["crop_start"])
    np.testing.assert_allclose(a["embeddings"], b["embeddings"], rtol=1e-5, atol=1e-6)
    other = extract(
        _cfg(eval={"crops_per_file": 5, "seed": 1}),
        model,
        ExtractOptions(str(folder), str(tmp_path / "c.npz"), **opts),
    )
    long = a["crop_start"] > 0  # files long enough for the draw to matter
    assert not np.array_equal(a["crop_start"][long], other["crop_start"][long])

    # the draws depend on (seed, path), not on the cache's history or the other files
    subset = tmp_path / "subset"
    shutil.copytree(folder / "low", subset / "low")
    (subset / "low" / "1_ann_0.wav").unlink()
    c = extract(cfg, model, ExtractOptions(str(subset), str(tmp_path / "d.npz"), **opts))
    for p in set(c["paths"].tolist()):
        np.testing.assert_array_equal(
            c["crop_start"][c["paths"] == p], a["crop_start"][a["paths"] == p]
        )


def test_sliding_chunks_cover_each_file(folder, tmp_path):
    cfg = _cfg(eval={"crop_mode": "sliding"})
    cache = open_cache(folder, MODEL_RATE, cache_dir=tmp_path / "cache", workers=1, progress=False)
    audio = _cached_audio(cache)
    length = model_input_length(cfg)
    ds, total = crop_dataset(cache, cfg, batch_size=4)
    chunks: dict[str, list[tuple[int, np.ndarray]]] = {}
    paths = {c.clip_id: c.path for c in cache.clips}
    rows = 0
    for crops, clip, start in ds:
        rows += len(crops)
        for x, c, s in zip(crops.numpy(), clip.numpy(), start.numpy()):
            chunks.setdefault(paths[int(c)], []).append((int(s), x))
    assert rows == total
    for path, wave in audio.items():
        got = sorted(chunks[path], key=lambda t: t[0])
        n = len(wave)
        assert [s for s, _ in got] == [k * length for k in range(math.ceil(n / length))], path
        joined = np.concatenate([x for _, x in got])  # non-overlapping and contiguous
        np.testing.assert_array_equal(joined[:n], wave)
        assert len(joined) - n < length

    payload = extract(
        cfg,
        _model(cfg),
        ExtractOptions(
            str(folder), str(tmp_path / "s.npz"), cache_dir=str(tmp_path / "cache"), progress=False
        ),
    )
    assert len(payload["embeddings"]) == total
    assert sorted(set(payload["paths"].tolist())) == sorted(audio)


@pytest.mark.parametrize("policy", ["loop", "pad"])
def test_short_clip_with_the_seed_crop_is_kept(folder, tmp_path, policy):
    """A 0.1 s file under the seed default's 4 s crop: looped or padded, never dropped."""
    cfg = load_config(
        resolve_config_path("cpc_conv1d_gru"),
        [f"data.short_clip_policy={policy}", "eval.crops_per_file=10"],
    )
    assert cfg.name == "cpc_conv1d_gru" and model_input_length(cfg) == 30 * 588
    only = tmp_path / "short"
    only.mkdir()
    shutil.copy(folder / "low" / "7_cat_9.wav", only / "7_cat_9.wav")
    cache = open_cache(
        only, cfg.data.sample_rate, cache_dir=tmp_path / "cache", workers=1, progress=False
    )
    wave = _cached_audio(cache)["7_cat_9.wav"]
    ds, total = crop_dataset(cache, cfg, batch_size=64)
    crops, _, starts = next(iter(ds))
    assert total == 10 and crops.shape == (10, 30 * 588)
    n = len(wave)
    for x, s in zip(crops.numpy(), starts.numpy()):
        assert 0 <= s < n
        if policy == "loop":
            np.testing.assert_array_equal(x, np.tile(wave, 30 * 588 // n + 2)[s : s + 30 * 588])
        else:
            assert s == 0
            np.testing.assert_array_equal(x[:n], wave)
            assert not x[n:].any()
    if policy == "loop":  # and through the seed-default model: 10 rows, none dropped
        payload = extract(
            cfg,
            _model(cfg),
            ExtractOptions(
                str(only),
                str(tmp_path / "e.npz"),
                cache_dir=str(tmp_path / "cache"),
                progress=False,
            ),
        )
        assert payload["embeddings"].shape == (10, 512) and np.isfinite(payload["embeddings"]).all()
        assert payload["paths"].tolist() == ["7_cat_9.wav"] * 10


def test_long_files_split_into_records_keep_exact_counts(folder, tmp_path, monkeypatch):
    """Files stored as several cache records still get exactly N crops (and full sliding cover)."""
    from cpc_tf.audio import cache as audio_cache

    monkeypatch.setattr(audio_cache, "RECORD_SECONDS", 0.7)
    cache = open_cache(folder, MODEL_RATE, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert max(c.records for c in cache.clips) >= 4
    for per_file in (1, 3, 7):
        ds, total = crop_dataset(cache, _cfg(eval={"crops_per_file": per_file}), batch_size=16)
        ids = np.concatenate([c.numpy() for _, c, _ in ds])
        assert len(ids) == total == per_file * len(cache.clips)
        assert (np.unique(ids, return_counts=True)[1] == per_file).all()
    ds, total = crop_dataset(cache, _cfg(eval={"crop_mode": "sliding"}), batch_size=16)
    starts = np.concatenate([s.numpy() for _, _, s in ds])
    assert len(starts) == total


# ------------------------------------------------------------------ streaming
def test_crop_pipeline_streams_from_the_shards(folder, tmp_path):
    """Structural check that memory stays flat: the dataset reads TFRecord shards, embeds
    no audio in its graph, and yields batches no larger than eval.batch_size."""
    cfg = _cfg(eval={"crops_per_file": 4})
    cache = open_cache(folder, MODEL_RATE, cache_dir=tmp_path / "cache", workers=1, progress=False)
    ds, total = crop_dataset(cache, cfg, batch_size=3)
    spec = ds.element_spec
    assert spec[0].shape.as_list() == [None, model_input_length(cfg)]
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(ds._as_serialized_graph().numpy())
    ops = {node.op for node in graph.node} | {
        node.op for f in graph.library.function for node in f.node_def
    }
    assert any(op.startswith("TFRecordDataset") for op in ops), sorted(ops)
    const_bytes = [
        len(node.attr["value"].tensor.tensor_content) + 4 * len(node.attr["value"].tensor.float_val)
        for f in [graph.node] + [fn.node_def for fn in graph.library.function]
        for node in f
        if node.op == "Const"
    ]
    audio_bytes = 4 * sum(c.num_samples for c in cache.clips)
    assert max(const_bytes) < audio_bytes / 20  # clip ids and lengths only, never samples
    sizes = [int(b[0].shape[0]) for b in ds]
    assert max(sizes) <= 3 and sum(sizes) == total


# ------------------------------------------------------------------ end to end
def test_train_extract_evaluate_end_to_end(trained, folder):
    work = trained["work"]
    baseline = work / "baseline.npz"
    cfg_path = work / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY_CPC))
    res = run_cli(
        "extract",
        "--random-init",
        "--config",
        str(cfg_path),
        "--audio-dir",
        str(folder),
        "--out",
        str(baseline),
        "--crops-per-file",
        "2",
        "--cache-dir",
        str(trained["cache"]),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    random, model = _load(baseline), _load(trained["npz"])
    assert random["run"].item() == "random-init" and "frames" not in random
    assert random["embeddings"].shape == (2 * len(_durations(folder)), TINY_CPC["model"]["c_dim"])
    assert set(random["paths"].tolist()) == set(model["paths"].tolist())
    report = work / "report"
    res = run_cli(
        "evaluate",
        "--embeddings",
        str(trained["npz"]),
        "--baseline",
        str(baseline),
        "--seeds",
        "2",
        "--test-fraction",
        "0.25",
        "--out",
        str(report),
        "--set",
        "eval.tsne_max_points=50",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["classes"]) == {"low", "high"}
    for name in ("model", "random-init"):
        acc = metrics["results"][name]["file"]["accuracy"]
        assert acc["n"] == 2 and 0.0 <= acc["mean"] <= 1.0
    text = (report / "report.md").read_text()
    assert "baseline" in text.lower() and "accuracy" in text.lower()


def test_mfcc_features_skip_and_count_bad_files(folder, tmp_path):
    """`extract --features mfcc`: one row per decodable file, the corrupt one skipped and
    counted.
    """
    out = tmp_path / "mfcc.npz"
    res = run_cli(
        "extract",
        "--features",
        "mfcc",
        "--audio-dir",
        str(folder),
        "--out",
        str(out),
        "--labels",
        "folder",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    d = _load(out)
    good = [p for p in _durations(folder)]
    assert sorted(d["paths"].tolist()) == sorted(good) and "high/8_cat_9.wav" not in good
    assert d["embeddings"].shape == (len(good), 40)  # mean and std of 20 MFCCs
    assert np.isfinite(d["embeddings"]).all() and str(d["run"]) == "features:mfcc"
    assert d["skipped_paths"].tolist() == ["high/8_cat_9.wav"] and d[
        "skipped_reasons"
    ].tolist() == ["corrupt"]
    assert "skipped, corrupt (1): high/8_cat_9.wav" in res.stdout
    bad = run_cli(
        "extract",
        "--features",
        "chroma",
        "--audio-dir",
        str(folder),
        "--out",
        str(tmp_path / "c.npz"),
    )
    assert (
        bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "mfcc" in bad.stderr
    )
