"""tf.data builders over the cache (issues #4 and #6).

Every crop the pipeline produces is looked up in the decoded cache, sample for sample,
so the tests check where each example came from (which clip, which start) rather
than only its shape. Synthetic clips are white noise, so a crop of a few samples
already pins down its position; the real FSDD digits (0.14-2.3 s, `shared_data`)
exercise short-clip handling on recorded speech.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
from helpers import TINY_CPC, TINY_SIMCLR, set_flags, tiny_config

from cpc_tf.audio import cache as audio_cache
from cpc_tf.audio import datasets
from cpc_tf.audio.cache import AudioCache, open_cache, parse_record
from cpc_tf.audio.datasets import simclr_views, split_clips
from cpc_tf.config import Config, from_dict, replace_keys
from cpc_tf.errors import ConfigError, DataError
from cpc_tf.models.registry import model_input_shape
from cpc_tf.training import make_strategy

SEED_RATE = 4410  # the seed's CPC rate: 4 s = 30 windows of 588 samples
SEED_CROP = 30 * 588


# ------------------------------------------------------------------ helpers
# The builders take the model's input shape from the caller (audio/ never imports
# models/); these wrappers pass the one the registry gives for the config.
def cpc_windows(cache: AudioCache, cfg: Config, ids, batch: int, **kw) -> tf.data.Dataset:
    return datasets.cpc_windows(cache, cfg, ids, batch, input_shape=model_input_shape(cfg), **kw)


def training_dataset(cache: AudioCache, cfg: Config, ids, batch: int, **kw) -> tf.data.Dataset:
    return datasets.training_dataset(
        cache, cfg, ids, batch, input_shape=model_input_shape(cfg), **kw
    )


def check_data_fits(cfg: Config, cache: AudioCache) -> None:
    datasets.check_data_fits(cfg, cache, model_input_shape(cfg))


def write_noise(folder: Path, name: str, samples: int, rate: int, seed: int) -> Path:
    """A mono 16-bit WAV of white noise (every crop of it is unique)."""
    folder.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).uniform(-0.9, 0.9, samples).astype(np.float32)
    path = folder / name
    sf.write(str(path), x, rate, subtype="PCM_16")
    return path


def build_cache(audio: Path, rate: int, root: Path, **kw) -> AudioCache:
    return open_cache(audio, rate, cache_dir=root, workers=1, progress=False, **kw)


def decoded(cache: AudioCache) -> dict[int, np.ndarray]:
    """Every clip of the cache, decoded back from its records (pieces joined in order)."""
    pieces: dict[int, list[tuple[int, np.ndarray]]] = {}
    for raw in tf.data.TFRecordDataset(cache.shard_paths):
        r = parse_record(raw)
        pieces.setdefault(int(r["clip_id"]), []).append((int(r["offset"]), r["audio"].numpy()))
    return {
        cid: np.concatenate([a for _, a in sorted(p, key=lambda t: t[0])])
        for cid, p in pieces.items()
    }


def fitted(audio: np.ndarray, length: int, policy: str) -> np.ndarray:
    """What a crop of `length` may be cut from: the clip, looped or zero-padded when short."""
    n = audio.size
    if n >= length:
        return audio
    if policy == "loop":
        return np.tile(audio, math.ceil(length / n))
    return np.concatenate([audio, np.zeros(length - n, audio.dtype)])


def locate(
    crop: np.ndarray, clips: dict[int, np.ndarray], policy: str = "loop"
) -> tuple[int, int] | None:
    """(clip id, start) of the contiguous slice equal to `crop`, or None."""
    crop = np.asarray(crop).reshape(-1)
    length = crop.size
    for cid, audio in clips.items():
        hay = fitted(audio, length, policy)
        limit = hay.size - length + 1
        if limit < 1:
            continue
        starts = np.flatnonzero(hay[:limit] == crop[0])
        for j in range(1, min(8, length)):  # narrow the candidates on a few more samples
            starts = starts[hay[starts + j] == crop[j]]
        for start in starts:
            if np.array_equal(hay[start : start + length], crop):
                return cid, int(start)
    return None


def take(ds: tf.data.Dataset, batches: int) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(batches)]


def with_augment(cfg: Config, **augment) -> Config:
    """A copy of `cfg` with augment settings replaced."""
    return replace_keys(cfg, {f"augment.{k}": v for k, v in augment.items()})


def seed_cpc(**data) -> Config:
    """The seed's default CPC config (4410 Hz, 4 s, T=27, k=3), data section overridden."""
    return from_dict({"data": dict({"shuffle_buffer": 64}, **data)})


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def noise_cache(tmp_path_factory) -> AudioCache:
    """Eight noise clips of 5-8.5 s at 4410 Hz (longer than a 4 s crop), in 4 shards."""
    root = tmp_path_factory.mktemp("noise")
    for i in range(8):
        write_noise(
            root / "audio", f"clip_{i}.wav", int((5.0 + 0.5 * i) * SEED_RATE), SEED_RATE, seed=i
        )
    return build_cache(root / "audio", SEED_RATE, root / "cache", min_shards=4)


@pytest.fixture(scope="module")
def noise_clips(noise_cache) -> dict[int, np.ndarray]:
    return decoded(noise_cache)


@pytest.fixture(scope="module")
def short_cache(tmp_path_factory) -> AudioCache:
    """Synthetic short clips (0.1, 0.5, 1.5 s) beside two long ones, at 4410 Hz."""
    root = tmp_path_factory.mktemp("short")
    for i, seconds in enumerate([0.1, 0.5, 1.5, 5.0, 6.0]):
        write_noise(root / "audio", f"s{i}.wav", int(seconds * SEED_RATE), SEED_RATE, seed=100 + i)
    return build_cache(root / "audio", SEED_RATE, root / "cache", min_shards=2)


@pytest.fixture(scope="module")
def fsdd_cache(shared_data, tmp_path_factory) -> AudioCache:
    """30 real FSDD digits (the shortest, the longest and a spread between) at 4410 Hz."""
    source = shared_data / "fsdd" / "recordings"
    files = sorted(source.glob("*.wav"))
    if not files:
        pytest.skip(f"no FSDD recordings in {source}")
    by_length = sorted(files, key=lambda f: (sf.info(str(f)).frames, f.name))
    picked = {by_length[0], by_length[-1], *by_length[:: max(1, len(by_length) // 28)]}
    root = tmp_path_factory.mktemp("fsdd")
    (root / "audio").mkdir()
    for f in sorted(picked):
        shutil.copy(f, root / "audio" / f.name)
    return build_cache(root / "audio", SEED_RATE, root / "cache", min_shards=4)


# ------------------------------------------------------------------ CPC windows
def test_cpc_windows_are_contiguous_slices_of_the_source(noise_cache, noise_clips):
    cfg = seed_cpc()
    assert (cfg.num_windows, cfg.window_samples) == (30, 588)
    split = split_clips(noise_cache, cfg)
    batches = take(cpc_windows(noise_cache, cfg, split.train, 8), 3)
    seen = set()
    for batch in batches:
        assert batch.shape == (8, 30, 588) and batch.dtype == np.float32
        for example in batch:
            where = locate(example.reshape(-1), noise_clips)  # the 30 windows, end to end
            assert where is not None, "an example is not one contiguous slice of a clip"
            cid, start = where
            assert 0 <= start <= noise_clips[cid].size - SEED_CROP  # never looped: clips are long
            seen.add(cid)
    assert len(seen) >= 4, f"24 examples came from only {len(seen)} of 8 files"


def test_frame_mode_gives_whole_crops(noise_cache, noise_clips):
    cfg = from_dict({"model": {"encoder": "frame"}, "data": {"shuffle_buffer": 16}})
    batch = take(cpc_windows(noise_cache, cfg, split_clips(noise_cache, cfg).train, 4), 1)[0]
    assert batch.shape == (4, cfg.crop_samples)
    assert all(locate(x, noise_clips) is not None for x in batch)


def test_shuffling_is_reproducible_and_seeded(noise_cache, noise_clips):
    def stream(cfg: Config, epoch: int = 0) -> list[tuple[int, int]]:
        ids = split_clips(noise_cache, cfg).train
        batches = take(cpc_windows(noise_cache, cfg, ids, 8, epoch=epoch), 2)
        return [locate(x.reshape(-1), noise_clips) for b in batches for x in b]

    first = stream(seed_cpc())
    assert first == stream(seed_cpc()), "the same seed must give the same crops in the same order"
    assert len({cid for cid, _ in first[:8]}) >= 3, "a batch should mix several files"
    other = stream(seed_cpc(seed=1))
    assert other != first
    assert [c for c, _ in other] != [c for c, _ in first], "another seed must reorder the files"
    assert stream(seed_cpc(), epoch=1) != first, "a later epoch must draw other crops"


def test_validation_stream_repeats_itself(noise_cache):
    cfg = seed_cpc()
    ids = split_clips(noise_cache, cfg).train[:3]
    ds = cpc_windows(noise_cache, cfg, ids, 2, training=False)
    a, b = take(ds, 2), take(ds, 2)
    np.testing.assert_array_equal(np.stack(a), np.stack(b))


# ------------------------------------------------------------------ SimCLR views
@pytest.fixture(scope="module")
def simclr_cache(tmp_path_factory) -> AudioCache:
    root = tmp_path_factory.mktemp("simclr")
    for i in range(4):
        write_noise(root / "audio", f"v{i}.wav", 3 * 8000 + 1000 * i, 8000, seed=200 + i)
    return build_cache(root / "audio", 8000, root / "cache", min_shards=2)


def test_simclr_gives_two_different_crops_of_one_clip(simclr_cache):
    clips = decoded(simclr_cache)
    cfg = tiny_config(TINY_SIMCLR, augment={"enabled": False})
    n = cfg.crop_samples
    v1, v2 = take(simclr_views(simclr_cache, cfg, split_clips(simclr_cache, cfg).train, 4), 1)[0]
    assert v1.shape == v2.shape == (4, n)
    for a, b in zip(v1, v2):
        (c1, s1), (c2, s2) = locate(a, clips), locate(b, clips)
        assert c1 == c2, "the two views must come from the same clip"
        assert s1 != s2, "the two views must be different crops"


def test_simclr_seed_crop_is_59049_and_the_chain_changes_each_view(simclr_cache):
    cfg = tiny_config(TINY_SIMCLR, data={"crop_samples": 59049})  # clips loop up to 59,049
    ids = split_clips(simclr_cache, cfg).train
    plain = with_augment(cfg, enabled=False)
    ((p1, p2),) = take(simclr_views(simclr_cache, plain, ids, 2), 1)
    ((a1, a2),) = take(simclr_views(simclr_cache, cfg, ids, 2), 1)
    assert p1.shape == a1.shape == a2.shape == (2, 59049)
    assert np.isfinite(a1).all() and np.isfinite(a2).all()
    assert not np.allclose(a1, p1) and not np.allclose(a2, p2), "the chain must change the views"
    assert not np.allclose(a1, a2)


# ------------------------------------------------------------------ short clips
def _policy_checks(cache: AudioCache, policy: str) -> int:
    """Crops of the seed config from `cache` under `policy`; returns how many were short."""
    clips = decoded(cache)
    cfg = seed_cpc(short_clip_policy=policy)
    batches = take(cpc_windows(cache, cfg, split_clips(cache, cfg).train, 8), 3)
    short = 0
    for x in (e.reshape(-1) for b in batches for e in b):
        where = locate(x, clips, policy)
        assert where is not None, f"a crop is not a slice of a {policy}ed clip"
        cid, start = where
        audio = clips[cid]
        if audio.size >= SEED_CROP:
            continue
        short += 1
        if policy == "loop":  # the clip over and over from a random phase
            np.testing.assert_array_equal(x, audio[(start + np.arange(SEED_CROP)) % audio.size])
        else:  # the whole clip, then zeros
            assert start == 0
            np.testing.assert_array_equal(x[: audio.size], audio)
            assert not x[audio.size :].any()
    return short


@pytest.mark.parametrize("policy", ["loop", "pad"])
def test_short_synthetic_clips_loop_or_pad(short_cache, policy):
    assert _policy_checks(short_cache, policy) > 0


@pytest.mark.parametrize("policy", ["loop", "pad"])
def test_short_fsdd_clips_loop_or_pad(fsdd_cache, policy):
    lengths = [c.num_samples for c in fsdd_cache.clips]
    assert max(lengths) < SEED_CROP  # every FSDD digit is shorter than the 4 s crop
    if policy == "pad":
        with pytest.raises(ConfigError, match="data.short_clip_policy=pad"):
            check_data_fits(seed_cpc(short_clip_policy="pad"), fsdd_cache)
    assert _policy_checks(fsdd_cache, policy) == 24


def test_min_clip_fraction_skips_and_counts(fsdd_cache, short_cache):
    for cache in (fsdd_cache, short_cache):
        cfg = seed_cpc(min_clip_fraction=0.25)  # clips under 1 s (4410 samples) are left out
        split = split_clips(cache, cfg)
        too_short = sorted(c.path for c in cache.clips if c.num_samples < 4410)
        assert sorted(split.too_short) == too_short and too_short
        assert f"{len(too_short)} skipped" in split.describe()
        kept = {c.clip_id for c in cache.clips if c.num_samples >= 4410}
        assert set(split.train) == kept
        clips = decoded(cache)
        for b in take(cpc_windows(cache, cfg, split.train, 8), 2):
            for x in b:
                assert locate(x.reshape(-1), clips)[0] in kept
    with pytest.raises(DataError, match="min_clip_fraction"):
        split_clips(short_cache, seed_cpc(min_clip_fraction=1.0, clip_seconds=7.0))


def test_short_tail_record_of_a_long_clip_is_not_looped(tmp_path, monkeypatch):
    """A clip cut into records: its short last piece never yields a looped crop."""
    monkeypatch.setattr(audio_cache, "RECORD_SECONDS", 2.0)
    monkeypatch.setattr("cpc_tf.audio.datasets.RECORD_SECONDS", 2.0, raising=False)
    write_noise(tmp_path / "audio", "long.wav", int(4.5 * 4000), 4000, seed=7)
    cache = build_cache(tmp_path / "audio", 4000, tmp_path / "cache")
    assert cache.clips[0].records == 3  # 2 s + 2 s + 0.5 s
    clips = decoded(cache)
    cfg = tiny_config(TINY_CPC)  # crops of 1.2 s
    for b in take(cpc_windows(cache, cfg, [cache.clips[0].clip_id], 4), 4):
        for x in b:
            where = locate(x.reshape(-1), clips)
            assert where is not None, "a crop was looped from the 0.5 s tail piece"
            assert where[1] + x.size <= 4 * 4000, "a crop came from the 0.5 s tail piece"


# ------------------------------------------------------------------ distribution
def test_mirrored_strategy_gives_each_replica_its_own_batch(noise_cache, noise_clips):
    strategy = make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    cfg = seed_cpc()
    ids = split_clips(noise_cache, cfg).train

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        return training_dataset(
            noise_cache, cfg, ids, ctx.get_per_replica_batch_size(8), input_context=ctx
        )

    batch = next(iter(strategy.distribute_datasets_from_function(dataset_fn)))
    parts = [t.numpy() for t in strategy.experimental_local_results(batch)]
    assert len(parts) == 2 and all(p.shape == (4, 30, 588) for p in parts)
    where = [locate(x.reshape(-1), noise_clips) for p in parts for x in p]
    assert None not in where
    assert len(set(where)) == 8, "the two replicas must get different examples"


def _clips_of_pipeline(
    cache: AudioCache, cfg: Config, ids: list[int], pipeline: int, batches: int
) -> list[tuple[int, int]]:
    clips = decoded(cache)
    ctx = tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2
    )
    ds = training_dataset(cache, cfg, ids, 4, input_context=ctx)
    return [locate(x.reshape(-1), clips) for b in take(ds, batches) for x in b]


def test_two_input_pipelines_read_disjoint_clips(noise_cache):
    cfg = seed_cpc()
    ids = split_clips(noise_cache, cfg).train
    assert len(noise_cache.shard_paths) >= 2
    seen = [_clips_of_pipeline(noise_cache, cfg, ids, p, 4) for p in (0, 1)]
    a, b = ({cid for cid, _ in s} for s in seen)
    assert a and b and not a & b, f"pipelines shared clips {a & b}"
    assert a | b == set(ids)


def test_one_shard_is_split_by_record_and_a_single_clip_feeds_both(tmp_path):
    for i in range(4):
        write_noise(tmp_path / "audio", f"r{i}.wav", int(1.5 * 4000), 4000, seed=300 + i)
    cache = build_cache(
        tmp_path / "audio", 4000, tmp_path / "cache", min_shards=1, shard_seconds=1e6
    )
    assert len(cache.shard_paths) == 1
    cfg = tiny_config(TINY_CPC)
    ids = [c.clip_id for c in cache.clips]
    seen = [_clips_of_pipeline(cache, cfg, ids, p, 3) for p in (0, 1)]
    a, b = ({cid for cid, _ in s} for s in seen)
    assert a and b and not a & b and a | b == set(ids)
    # equally long clips: only the seeds can tell the two workers' crop offsets apart
    assert [s for _, s in seen[0]] != [s for _, s in seen[1]], "both workers drew the same offsets"
    # fewer records than pipelines: both read the one clip (no empty, endless pipeline)
    one = [_clips_of_pipeline(cache, cfg, ids[:1], p, 1) for p in (0, 1)]
    assert {cid for p in one for cid, _ in p} == {ids[0]}
    assert one[0] != one[1]


# ------------------------------------------------------------------ start-up checks
def test_check_data_fits_refuses_padding_every_crop(short_cache):
    check_data_fits(seed_cpc(short_clip_policy="pad"), short_cache)  # two clips are long enough
    with pytest.raises(ConfigError, match=r"data.clip_seconds=7 .*data.short_clip_policy=pad"):
        check_data_fits(seed_cpc(short_clip_policy="pad", clip_seconds=7.0), short_cache)
    check_data_fits(seed_cpc(short_clip_policy="loop", clip_seconds=7.0), short_cache)


def test_cli_names_the_setting_and_exits_2(short_cache, tmp_path):
    """`cpc_tf train` refuses impossible crops at start-up with one line and exit code 2."""
    audio = Path(short_cache.audio_dir)
    base = [
        "train",
        "--audio-dir",
        str(audio),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--set",
        "data.decode_workers=1",
    ]
    cases = {
        "pad": (
            set_flags(TINY_CPC)
            + [
                "--set",
                "data.short_clip_policy=pad",
                "--set",
                "data.sample_rate=4410",
                "--set",
                "data.clip_seconds=7",
            ],
            "data.short_clip_policy=pad",
        ),
        "T": (set_flags(TINY_CPC) + ["--set", "model.context_steps=0"], "model.context_steps"),
        "k": (set_flags(TINY_CPC) + ["--set", "model.predict_steps=-1"], "model.predict_steps"),
        "window": (["--set", "data.clip_seconds=0.5"], "model.conv1d.kernels"),
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "cpc_tf", *base, "--out", str(tmp_path / name), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (flags, _) in cases.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        expected = cases[name][1]
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("cpc_tf: error:")]
        assert proc.returncode == 2, f"{name}: exit {proc.returncode}\n{err[-2000:]}"
        assert "Traceback" not in err
        assert len(lines) == 1 and expected in lines[0], f"{name}: {err[-2000:]}"
        assert not (tmp_path / name / "model.keras").exists()
