"""Finding and decoding audio files (cpc_tf.audio.files), on synthetic files only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import audio_fixtures as fx
import numpy as np
import pytest
import soundfile as sf

from cpc_tf.audio import decode as adec
from cpc_tf.audio import files as af


# ------------------------------------------------------------------- finding files
def test_find_audio_files_extensions_links_and_names(tmp_path: Path) -> None:
    d = tmp_path / "audio"
    fx.write_sine(d / "A.WAV", 0.1)
    fx.write_sine(d / "b.Flac", 0.1)
    fx.write_sine(d / "sub dir" / "c.AIF", 0.1, fmt="AIFF")
    fx.write_sine(d / "sub dir" / "ünïcødé näme.au", 0.1)
    (d / "notes.txt").write_text("x")
    (d / "sub dir" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    os.symlink("..", d / "sub dir" / "loop")  # a folder link loop
    os.symlink(d, d / "again")  # a second path to the same folder
    os.symlink("missing.wav", d / "broken.wav")  # a broken file link
    os.symlink("self.wav", d / "self.wav")  # a link to itself (ELOOP)
    os.symlink(d / "A.WAV", d / "link.wav")  # a good file link: kept
    scan = af.find_audio_files(d)
    assert [f.rel for f in scan.files] == [
        "A.WAV",
        "b.Flac",
        "link.wav",
        "sub dir/c.AIF",
        "sub dir/ünïcødé näme.au",
    ]
    assert scan.other_files == 2
    assert {(s.path, s.reason) for s in scan.skipped} == {
        ("broken.wav", "unreadable"),
        ("self.wav", "unreadable"),
    }
    f = scan.files[0]
    assert f.size == os.path.getsize(d / "A.WAV") and f.mtime_ns == os.stat(d / "A.WAV").st_mtime_ns


# ------------------------------------------------------------------- decoding
@pytest.mark.parametrize(
    ("subtype", "channels", "rate"),
    [
        ("PCM_U8", 1, 8000),
        ("PCM_16", 2, 11025),
        ("PCM_24", 3, 22050),
        ("FLOAT", 6, 44100),
        ("DOUBLE", 8, 48000),
        ("PCM_32", 2, 96000),
    ],
)
def test_decode_bit_depths_channels_and_rates(
    tmp_path: Path, subtype: str, channels: int, rate: int
) -> None:
    path = fx.write_sine(
        tmp_path / "x.wav", seconds=0.6, sr=rate, freq=440.0, channels=channels, subtype=subtype
    )
    out = af.decode_audio(path, 16000)
    n = int(round(0.6 * rate))
    assert len(out.samples) == af.resampled_length(n, rate, 16000)
    assert abs(len(out.samples) - 0.6 * 16000) <= 1
    assert out.orig_sample_rate == rate and out.channels == channels and not out.silent
    assert out.samples.dtype == np.float32
    assert fx.dominant_frequency(out.samples, 16000) == pytest.approx(440.0, abs=3.0)
    # channels differ only slightly in phase, so the mix keeps nearly the full amplitude
    assert 0.4 < np.abs(out.samples[100:-100]).max() < 0.52


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("x.flac", {}),
        ("x.ogg", {}),
        ("x.aiff", {}),
        ("x.au", {}),
        ("x.mp3", {"fmt": "MP3", "subtype": "MPEG_LAYER_III"}),
    ],
)
def test_decode_container_formats(tmp_path: Path, name: str, kwargs: dict) -> None:
    path = fx.write_sine(tmp_path / name, seconds=1.0, sr=22050, freq=1000.0, channels=2, **kwargs)
    out = af.decode_audio(path, 8000)
    assert abs(len(out.samples) - 8000) <= (
        1 if "mp3" not in name else 1200
    )  # MP3 adds codec padding
    assert fx.dominant_frequency(out.samples, 8000) == pytest.approx(1000.0, abs=5.0)


def test_upsampling_keeps_frequency(tmp_path: Path) -> None:
    path = fx.write_sine(tmp_path / "low.wav", seconds=0.5, sr=8000, freq=300.0)
    out = af.decode_audio(path, 44100, quality="VHQ")
    assert len(out.samples) == 22050
    assert fx.dominant_frequency(out.samples, 44100) == pytest.approx(300.0, abs=3.0)


def test_block_decoding_matches_and_spools(tmp_path: Path) -> None:
    path = fx.write_sine(tmp_path / "long.flac", seconds=3.0, sr=44100, channels=2)
    with af.AudioReader(path) as reader:
        blocks = list(af.iter_resampled(reader, 16000, block_frames=4096))
    assert len(blocks) > 10  # really streamed
    streamed = np.concatenate(blocks)
    assert len(streamed) == 48000
    whole = af.decode_audio(path, 16000).samples
    np.testing.assert_allclose(streamed, whole, atol=1e-4)
    # a result longer than the spool threshold travels through a file
    spool = tmp_path / "spool"
    spool.mkdir()
    item = (str(path), "long.flac")
    small = af.decode_for_cache([item], 16000, str(spool), spool_samples=10**9)
    big = af.decode_for_cache([item], 16000, str(spool), spool_samples=1000)
    assert small[0].pcm is not None and small[0].spool is None
    assert big[0].pcm is None and big[0].spool is not None
    np.testing.assert_array_equal(af.read_spool(big[0].spool, 0, big[0].num_samples), small[0].pcm)
    np.testing.assert_allclose(small[0].pcm / 32768.0, whole, atol=1 / 32768 + 1e-6)


def test_silent_file_is_kept_and_flagged(tmp_path: Path) -> None:
    out = af.decode_audio(fx.write_silent(tmp_path / "quiet.wav"), 16000)
    assert out.silent and len(out.samples) == 8000 and not out.samples.any()
    loud = af.decode_audio(fx.write_sine(tmp_path / "loud.wav", amp=0.01), 16000)
    assert not loud.silent


BAD_FILES = {
    "corrupt.wav": (fx.write_corrupt_wav, af.REASON_CORRUPT),
    "corrupt.flac": (fx.write_corrupt_flac, af.REASON_CORRUPT),
    "empty.wav": (lambda p: p.write_bytes(b"") and p, af.REASON_EMPTY),
    "text.wav": (fx.write_text, af.REASON_NOT_AUDIO),
    "tag.wav": (fx.write_unsupported_wav, af.REASON_UNSUPPORTED),
    "random.mp3": (fx.write_random_bytes, af.REASON_UNSUPPORTED),
    "nan.wav": (fx.write_nonfinite_wav, af.REASON_NONFINITE),
    "inf.wav": (lambda p: fx.write_nonfinite_wav(p, float("-inf")), af.REASON_NONFINITE),
    "zero.wav": (fx.write_zero_frames, af.REASON_TOO_SHORT),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_get_a_reason(tmp_path: Path, name: str) -> None:
    make, reason = BAD_FILES[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(af.AudioFileError) as info:
        af.decode_audio(path, 16000)
    assert info.value.reason == reason
    # the cache worker turns the same failure into a result, never an exception
    (res,) = af.decode_for_cache([(str(path), name)], 16000, str(tmp_path))
    assert not res.ok and res.reason == reason and res.pcm is None and res.spool is None


def test_unreadable_file_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fx.write_sine(tmp_path / "locked.wav")

    def denied(p: str, n: int = 4096) -> bytes:
        raise PermissionError(13, "Permission denied", p)

    monkeypatch.setattr(adec, "read_head", denied)  # looked up by AudioReader
    with pytest.raises(af.AudioFileError) as info:
        af.probe_audio(path)
    assert info.value.reason == af.REASON_UNREADABLE


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="running as root: chmod 000 does not stop root from reading",
)
def test_unreadable_file_real_permissions(
    tmp_path: Path,
) -> None:  # pragma: no cover - non-root only
    path = fx.write_sine(tmp_path / "locked.wav")
    path.chmod(0)
    try:
        with pytest.raises(af.AudioFileError) as info:
            af.probe_audio(path)
        assert info.value.reason == af.REASON_UNREADABLE
    finally:
        path.chmod(0o644)


def test_audioread_fallback_when_libsndfile_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fx.write_sine(tmp_path / "x.wav", seconds=0.5, sr=16000, channels=2)

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("libsndfile says no")

    monkeypatch.setattr(sf, "SoundFile", refuse)
    out = af.decode_audio(path, 8000)
    assert len(out.samples) == 4000 and out.channels == 2
    assert fx.dominant_frequency(out.samples, 8000) == pytest.approx(440.0, abs=5.0)
    assert af.probe_audio(path).backend == "audioread"


def test_files_and_labels_do_not_import_tensorflow() -> None:
    code = (
        "import sys, cpc_tf.audio.files, cpc_tf.audio.labels; "
        "sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=root).returncode == 0
