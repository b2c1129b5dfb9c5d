"""The decode-once cache (cpc_tf.audio.cache): build, reuse, incremental updates,
atomicity, parallel decoding, errors, and a subset of the real data in ../shared/data."""

from __future__ import annotations

import functools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import audio_fixtures as fx
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from cpc_tf.audio import builder as ab
from cpc_tf.audio import cache as ac
from cpc_tf.audio import files as af
from cpc_tf.audio import pool as ap
from cpc_tf.audio import shards as ash
from cpc_tf.errors import DataError

SR = 16000
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_audio(cache: ac.AudioCache) -> dict[str, np.ndarray]:
    """Every clip's audio, reassembled from its records (checks offsets on the way)."""
    pieces: dict[str, list[tuple[int, np.ndarray]]] = {}
    ds = tf.data.TFRecordDataset(cache.shard_paths).map(ac.parse_record)
    for r in ds.as_numpy_iterator():
        pieces.setdefault(r["path"].decode(), []).append((int(r["offset"]), r["audio"]))
    out = {}
    for path, parts in pieces.items():
        parts.sort(key=lambda p: p[0])
        pos = 0
        for offset, audio in parts:
            assert offset == pos
            pos += len(audio)
        out[path] = np.concatenate([a for _, a in parts])
    return out


def shard_state(cache: ac.AudioCache) -> dict[str, int]:
    return {os.path.basename(p): os.stat(p).st_mtime_ns for p in cache.shard_paths}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Six good files of assorted kinds, one silent one, and one of each bad kind."""
    d = tmp_path / "audio"
    fx.write_sine(d / "a.wav", 0.5, 8000, freq=300)
    fx.write_sine(d / "b.flac", 0.7, 44100, freq=500, channels=2)
    fx.write_sine(d / "sub" / "c.ogg", 0.4, 48000, freq=700, channels=4)
    fx.write_sine(d / "sub" / "d e ü.wav", 0.3, 96000, freq=900, subtype="PCM_24")
    fx.write_sine(d / "f.aiff", 0.2, 22050, freq=1100)
    fx.write_sine(d / "g.wav", 0.25, 16000, freq=1300, subtype="PCM_U8")
    fx.write_silent(d / "quiet.wav")
    fx.write_corrupt_wav(d / "bad" / "corrupt.wav")
    (d / "bad" / "empty.wav").write_bytes(b"")
    fx.write_text(d / "bad" / "text.wav")
    fx.write_unsupported_wav(d / "bad" / "tag.wav")
    fx.write_random_bytes(d / "bad" / "noise.mp3")
    fx.write_nonfinite_wav(d / "bad" / "nan.wav")
    fx.write_zero_frames(d / "bad" / "zero.wav")
    (d / "readme.txt").write_text("not audio, not counted")
    os.symlink("..", d / "sub" / "loop")
    return d


def build(folder: Path, tmp_path: Path, **kw: object) -> ac.AudioCache:
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return ac.open_cache(folder, SR, cache_dir=tmp_path / "cache", **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------- build and reuse
def test_build_then_reuse(folder: Path, tmp_path: Path) -> None:
    cache = build(folder, tmp_path)
    assert [c.path for c in cache.clips] == [
        "a.wav",
        "b.flac",
        "f.aiff",
        "g.wav",
        "quiet.wav",
        "sub/c.ogg",
        "sub/d e ü.wav",
    ]
    reasons = {s.path: s.reason for s in cache.skipped}
    assert reasons == {
        "bad/corrupt.wav": "corrupt",
        "bad/empty.wav": "empty",
        "bad/text.wav": "not audio",
        "bad/tag.wav": "unsupported codec",
        "bad/noise.mp3": "unsupported codec",
        "bad/nan.wav": "NaN/Inf samples",
        "bad/zero.wav": "too short",
    }
    assert cache.update.decoded == 14 and cache.update.reused == 0
    assert [c.path for c in cache.clips if c.silent] == ["quiet.wav"]
    summary = cache.summary()
    assert summary.startswith("7 files, ") and "7 shards" in summary
    assert (
        "skipped 7 (unsupported codec: 2, NaN/Inf samples: 1, corrupt: 1, empty: 1, not audio: 1, "
        "too short: 1)" in summary
    )
    assert summary.endswith("; 1 silent file flagged")
    b = next(c for c in cache.clips if c.path == "b.flac")
    assert (
        b.orig_sample_rate == 44100
        and b.channels == 2
        and b.num_samples == af.resampled_length(int(0.7 * 44100), 44100, SR)
        and b.duration == pytest.approx(0.7, abs=1e-4)
    )
    assert cache.shard_paths == sorted(cache.shard_paths) and all(
        os.path.isabs(p) for p in cache.shard_paths
    )
    assert cache.shard_paths_for([b.clip_id]) == [os.path.join(cache.root, b.shard)]
    assert not [n for n in os.listdir(cache.root) if n.endswith(".tmp") or n.startswith(".spool")]

    before = shard_state(cache)
    again = build(folder, tmp_path)
    assert again.update.decoded == 0 and again.update.reused == 7
    assert shard_state(again) == before
    assert again.summary() == summary and [c.clip_id for c in again.clips] == [
        c.clip_id for c in cache.clips
    ]


def test_records_round_trip(folder: Path, tmp_path: Path) -> None:
    cache = build(folder, tmp_path)
    audio = read_audio(cache)
    assert set(audio) == {c.path for c in cache.clips}
    for clip in cache.clips:
        x = audio[clip.path]
        ref = af.decode_audio(folder / clip.path, SR).samples
        assert len(x) == clip.num_samples == len(ref)
        np.testing.assert_allclose(x, np.clip(ref, -1, 32767 / 32768), atol=0.5 / 32768 + 1e-7)
    # parse_record is graph-safe: it works inside a traced map with unknown lengths
    ds = tf.data.TFRecordDataset(cache.shard_paths).map(ac.parse_record)
    spec = ds.element_spec
    assert spec["audio"].dtype == tf.float32 and spec["audio"].shape.as_list() == [None]
    assert spec["clip_id"].dtype == tf.int64 and spec["path"].dtype == tf.string


def test_long_files_split_into_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ac, "RECORD_SECONDS", 0.25)
    d = tmp_path / "audio"
    fx.write_sine(d / "long.wav", 1.1, SR)
    cache = build(d, tmp_path)
    (clip,) = cache.clips
    assert clip.records == 5
    offsets = [
        int(r["offset"])
        for r in tf.data.TFRecordDataset(cache.shard_paths).map(ac.parse_record).as_numpy_iterator()
    ]
    assert offsets == [0, 4000, 8000, 12000, 16000]
    x = read_audio(cache)["long.wav"]
    assert len(x) == 17600
    np.testing.assert_allclose(x, fx.sine(1.1, SR), atol=1e-4)


def test_shard_count_rules(tmp_path: Path) -> None:
    d = tmp_path / "audio"
    for i in range(10):
        fx.write_sine(d / f"{i}.wav", 0.1 + 0.01 * i, SR)
    assert len(build(d, tmp_path, min_shards=8).shard_paths) == 8  # enough files for 8
    assert len(build(d, tmp_path / "b", min_shards=1, shard_seconds=0.5).shard_paths) == 3
    assert len(build(d, tmp_path / "c", min_shards=1).shard_paths) == 1
    few = tmp_path / "few"
    for i in range(3):
        fx.write_sine(few / f"{i}.wav", 0.1, SR)
    assert len(build(few, tmp_path, min_shards=8).shard_paths) == 3  # never more than files


# ------------------------------------------------------------------- incremental updates
def test_incremental_add_change_delete(folder: Path, tmp_path: Path) -> None:
    first = build(folder, tmp_path)
    audio0 = read_audio(first)
    ids0 = {c.path: c.clip_id for c in first.clips}
    state0 = shard_state(first)

    fx.write_sine(folder / "new.wav", 0.3, SR, freq=2000)
    added = build(folder, tmp_path)
    assert added.update.decoded == 1 and added.update.reused == 7 and added.update.removed == 0
    assert set(state0.items()) <= set(shard_state(added).items())  # old shards untouched
    assert len(added.shard_paths) == len(first.shard_paths) + 1
    assert {c.path: c.clip_id for c in added.clips if c.path != "new.wav"} == ids0

    target = folder / "b.flac"
    old_shard = next(c.shard for c in added.clips if c.path == "b.flac")
    fx.write_sine(target, 0.9, 44100, freq=3000)
    os.utime(target, ns=(os.stat(target).st_atime_ns, os.stat(target).st_mtime_ns + 10**9))
    changed = build(folder, tmp_path)
    assert (
        changed.update.decoded == 1 and changed.update.removed == 1 and changed.update.reused == 7
    )
    new_b = next(c for c in changed.clips if c.path == "b.flac")
    assert new_b.clip_id != ids0["b.flac"] and new_b.duration == pytest.approx(0.9, abs=1e-4)
    assert old_shard not in {os.path.basename(p) for p in changed.shard_paths}
    audio2 = read_audio(changed)
    assert fx.dominant_frequency(audio2["b.flac"], SR) == pytest.approx(3000, abs=20)
    for path, x in audio0.items():
        if path != "b.flac":
            np.testing.assert_array_equal(audio2[path], x)

    (folder / "a.wav").unlink()
    (folder / "bad" / "text.wav").unlink()
    deleted = build(folder, tmp_path)
    assert deleted.update.decoded == 0 and deleted.update.removed == 1
    assert "a.wav" not in {c.path for c in deleted.clips}
    assert "bad/text.wav" not in {s.path for s in deleted.skipped}
    assert set(read_audio(deleted)) == {c.path for c in deleted.clips}
    on_disk = {n for n in os.listdir(deleted.root) if n.endswith(".tfrecord")}
    assert on_disk == {
        os.path.basename(p) for p in deleted.shard_paths
    }  # superseded shards removed


def test_reuse_survives_a_missing_shard(folder: Path, tmp_path: Path) -> None:
    cache = build(folder, tmp_path, min_shards=2)
    victim = cache.clips[0]
    os.remove(os.path.join(cache.root, victim.shard))
    healed = build(folder, tmp_path, min_shards=2)
    lost = sum(c.shard == victim.shard for c in cache.clips)
    assert healed.update.decoded == lost
    assert set(read_audio(healed)) == {c.path for c in healed.clips}

    # a damaged shard that must be rewritten (one of its files was deleted): its other
    # clips cannot be copied, so they are decoded again
    shard = max(
        {c.shard for c in healed.clips}, key=lambda n: sum(c.shard == n for c in healed.clips)
    )
    members = [c for c in healed.clips if c.shard == shard]
    assert len(members) >= 2
    path = os.path.join(healed.root, shard)
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) - 7)
    (folder / members[0].path).unlink()
    repaired = build(folder, tmp_path, min_shards=2)
    assert repaired.update.decoded == len(members) - 1
    assert set(read_audio(repaired)) == {c.path for c in repaired.clips}
    assert len(repaired.clips) == len(healed.clips) - 1


# ------------------------------------------------------------------- atomicity
def test_crash_mid_update_leaves_the_old_cache(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(folder, tmp_path)
    audio0 = read_audio(first)
    index0 = Path(first.root, ac.INDEX_NAME).read_bytes()
    fx.write_sine(folder / "new1.wav", 0.3, SR)
    fx.write_sine(folder / "new2.wav", 0.3, SR)
    (folder / "g.wav").unlink()  # forces a shard rewrite too

    real_write = ash.ShardWriter.write
    calls = {"n": 0}

    def failing_write(self: ash.ShardWriter, record: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        real_write(self, record)

    monkeypatch.setattr(ash.ShardWriter, "write", failing_write)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build(folder, tmp_path)
    monkeypatch.undo()
    assert Path(first.root, ac.INDEX_NAME).read_bytes() == index0
    old = ac.AudioCache.load(first.root)
    assert all(os.path.exists(p) for p in old.shard_paths)
    assert {k: v.tobytes() for k, v in read_audio(old).items()} == {
        k: v.tobytes() for k, v in audio0.items()
    }
    assert not [n for n in os.listdir(first.root) if n.endswith(".tmp")]

    # a hard kill leaves debris behind (tmp files, finished but unreferenced shards)
    monkeypatch.setattr(ab, "remove_quietly", lambda path: None)
    monkeypatch.setattr(
        ab, "write_index", lambda root, index: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    with pytest.raises(KeyboardInterrupt):
        build(folder, tmp_path)
    monkeypatch.undo()
    Path(first.root, "shard-00002-00099.tfrecord.tmp").write_bytes(b"half a shard")
    assert ac.AudioCache.load(first.root).summary() == old.summary()
    assert read_audio(ac.AudioCache.load(first.root)).keys() == audio0.keys()
    final = build(folder, tmp_path)
    assert final.update.decoded == 2 and {"new1.wav", "new2.wav"} <= {c.path for c in final.clips}
    names = set(os.listdir(final.root))
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".spool")]
    assert {n for n in names if n.endswith(".tfrecord")} == {
        os.path.basename(p) for p in final.shard_paths
    }
    assert set(read_audio(final)) == {c.path for c in final.clips}


# ------------------------------------------------------------------- parallel decoding
def test_parallel_build_matches_inline(folder: Path, tmp_path: Path) -> None:
    inline = read_audio(build(folder, tmp_path / "one", workers=1))
    parallel_cache = build(folder, tmp_path / "two", workers=2)
    assert parallel_cache.update.decoded == 14
    parallel = read_audio(parallel_cache)
    assert parallel.keys() == inline.keys()
    for k in inline:
        np.testing.assert_array_equal(parallel[k], inline[k])


def test_a_crashing_decoder_only_loses_its_file(tmp_path: Path) -> None:
    d = tmp_path / "audio"
    items = []
    for name in ["a.wav", "b.wav", "crash.wav", "c.wav", "d.wav"]:
        fx.write_sine(d / name, 0.1, SR)
        items.append([(str(d / name), name)])
    spool = tmp_path / "spool"
    spool.mkdir()
    fn = functools.partial(fx.crashing_decode, sample_rate=SR, spool_dir=str(spool))
    pool = ap.DecodePool(2, fn, ab.crash_result, window=2, steal=False)
    try:
        results = [r for task in pool.imap(items) for r in task]
    finally:
        pool.close()
    assert [r.rel for r in results] == ["a.wav", "b.wav", "crash.wav", "c.wav", "d.wav"]
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert results[2].reason == "corrupt" and "crashed" in results[2].detail


def test_workers_that_cannot_start_fall_back_to_this_process(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dying_executor(self: ap.DecodePool, n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            n, mp_context=multiprocessing.get_context("spawn"), initializer=os._exit, initargs=(3,)
        )

    recovered = []
    real_recover = ap.DecodePool._recover

    def counting_recover(self: ap.DecodePool, task: list) -> list:
        recovered.append(len(task))
        return real_recover(self, task)

    monkeypatch.setattr(ap.DecodePool, "_executor", dying_executor)
    monkeypatch.setattr(ap.DecodePool, "_recover", counting_recover)
    cache = build(folder, tmp_path, workers=3)
    assert recovered  # the broken pool was noticed and its tasks were run here instead
    assert cache.update.decoded == 14 and len(cache.clips) == 7
    assert set(read_audio(cache)) == {c.path for c in cache.clips}


def test_concurrent_builders_take_turns(folder: Path, tmp_path: Path) -> None:
    """Two builders of one cache (e.g. the workers of a multi-worker run) never both decode."""
    with ThreadPoolExecutor(2) as ex:
        caches = list(ex.map(lambda _: build(folder, tmp_path), range(2)))
    assert sorted(c.update.decoded for c in caches) == [0, 14]
    assert caches[0].shard_paths == caches[1].shard_paths


# ------------------------------------------------------------------- errors and locations
def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="audio folder not found"):
        build(tmp_path / "nope", tmp_path)
    fx.write_sine(tmp_path / "file.wav")
    with pytest.raises(DataError, match="not a folder"):
        build(tmp_path / "file.wav", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="audio folder is empty"):
        build(tmp_path / "empty", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(
        DataError, match=r"no audio files \(.*\.wav.*\) in .*docs; it holds 1 other files"
    ):
        build(tmp_path / "docs", tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    fx.write_text(bad / "a.wav")
    fx.write_corrupt_wav(bad / "b.wav")
    with pytest.raises(
        DataError, match=r"none of the 2 audio files .* could be decoded \(.*corrupt: 1"
    ):
        build(bad, tmp_path)
    assert not (tmp_path / "cache").exists() or not any(
        n.endswith(".tfrecord") for _, _, fs in os.walk(tmp_path / "cache") for n in fs
    )


def test_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "My Audio"
    fx.write_sine(d / "a.wav", 0.1, SR)
    monkeypatch.setenv("CPC_TF_CACHE", str(tmp_path / "envcache"))
    root = ac.cache_root(d, 22050)
    assert root.startswith(str(tmp_path / "envcache")) and root.endswith(
        os.path.join("", "sr22050")
    )
    assert os.path.basename(os.path.dirname(root)).startswith("My_Audio-")
    cache = ac.open_cache(d, 22050, workers=1, progress=False)
    assert cache.root == root and os.path.exists(os.path.join(root, ac.INDEX_NAME))
    assert ac.cache_root(d, 8000) != root
    assert ac.cache_root(d, 8000, cache_dir=tmp_path / "x").startswith(str(tmp_path / "x"))
    assert cache.clips[0].num_samples == 2205


# ------------------------------------------------------------------- real data
def test_real_data_subset(tmp_path: Path) -> None:
    fsdd = SHARED_DATA / "fsdd" / "recordings"
    recordings = SHARED_DATA / "recordings"
    if not fsdd.is_dir() or not recordings.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    d = tmp_path / "real"
    (d / "fsdd").mkdir(parents=True)
    (d / "music").mkdir()
    chosen = sorted(fsdd.glob("*.wav"))[::50][:60]
    for p in chosen:
        os.symlink(p, d / "fsdd" / p.name)
    oggs = [
        "456440__inspectorj__bird-whistling-robin-single-13.hq.ogg",
        "198-209-0000.hq.ogg",
        "sorohanro_-_solo-trumpet-06.hq.ogg",
    ]
    for name in oggs:
        os.symlink(recordings / name, d / "music" / name)
    cache = ac.open_cache(d, 22050, cache_dir=tmp_path / "cache", workers=2, progress=False)
    assert len(cache.clips) == len(chosen) + 3 and not cache.skipped
    assert len(cache.shard_paths) == 8
    for clip in cache.clips:
        info = sf.info(str(d / clip.path))
        assert clip.orig_sample_rate == info.samplerate
        assert clip.channels == info.channels
        assert clip.duration == pytest.approx(info.frames / info.samplerate, abs=1 / 8000)
    assert {c.orig_sample_rate for c in cache.clips} == {8000, 16000, 44100}
    lengths = {k: len(v) for k, v in read_audio(cache).items()}
    assert lengths == {c.path: c.num_samples for c in cache.clips}
    again = ac.open_cache(d, 22050, cache_dir=tmp_path / "cache", workers=2, progress=False)
    assert again.update.decoded == 0


def test_cache_on_a_non_local_file_system(tmp_path: Path) -> None:
    """TensorFlow's in-memory file system stands in for gs:// or hdfs:// (tf.io.gfile paths)."""
    d = tmp_path / "audio"
    for i in range(3):
        fx.write_sine(d / f"{i}.wav", 0.2, SR)
    base = f"ram://{tmp_path.name}"
    cache = ac.open_cache(d, 8000, cache_dir=base, workers=1, progress=False)
    assert cache.root.startswith(base + "/") and len(cache.shard_paths) == 3
    fx.write_sine(d / "3.wav", 0.2, SR)
    (d / "0.wav").unlink()
    updated = ac.open_cache(d, 8000, cache_dir=base, workers=1, progress=False)
    assert updated.update.decoded == 1 and updated.update.removed == 1
    assert sorted(read_audio(updated)) == ["1.wav", "2.wav", "3.wav"]
    assert sorted(tf.io.gfile.listdir(updated.root)) == sorted(
        [ac.INDEX_NAME] + [p.rsplit("/", 1)[1] for p in updated.shard_paths]
    )
    with pytest.raises(DataError, match="no valid audio cache"):
        ac.AudioCache.load(base + "/nothing-here")
    with pytest.raises(KeyError):
        updated.clip(12345)
