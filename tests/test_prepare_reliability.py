"""`cpc_tf prepare` under faults: a full disk or no memory is not a bad file, absurd
header rates are refused with bounded memory, kill -9 leaves no process or debris
behind, and what prepare prints cannot be forged by file names."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import audio_fixtures as fx
import numpy as np
import pytest
import soundfile as sf

from cpc_tf.audio import cache as ac
from cpc_tf.audio import decode as adec
from cpc_tf.audio import files as af
from cpc_tf.audio import shards as ash
from cpc_tf.audio import worker as aw
from cpc_tf.audio.report import printable
from cpc_tf.cli import main

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def prepare_args(folder: Path, tmp_path: Path, workers: int = 1) -> list[str]:
    return [
        "prepare",
        "--audio-dir",
        str(folder),
        "--sample-rate",
        str(SR),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--workers",
        str(workers),
    ]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "audio"
    for i in range(3):
        fx.write_sine(d / f"{i}.wav", 0.2, 8000, freq=300 + 100 * i)
    fx.write_corrupt_wav(d / "broken.wav")
    return d


def index_bytes(tmp_path: Path, folder: Path) -> bytes:
    return Path(ac.cache_root(folder, SR, tmp_path / "cache"), ac.INDEX_NAME).read_bytes()


# ------------------------------------------------------------------- machine faults
def _full_disk(self: ash.ShardWriter, record: bytes) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _oom_on_new(reader: af.AudioReader, *args: object, **kwargs: object) -> object:
    if reader.path.endswith("new.wav"):
        raise MemoryError
    return _real_iter_resampled(reader, *args, **kwargs)


def _spool_full(self: object, pcm: np.ndarray) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


_real_iter_resampled = af.iter_resampled


@pytest.mark.parametrize(
    ("target", "name", "fake", "words"),
    [
        (ash.ShardWriter, "write", _full_disk, "No space left on device"),
        (aw, "iter_resampled", _oom_on_new, "out of memory while decoding new.wav"),
        (aw._PcmSink, "write", _spool_full, "No space left on device while decoding"),
    ],
)
def test_a_machine_fault_aborts_and_keeps_the_cache(
    folder: Path,
    tmp_path: Path,
    target: object,
    name: str,
    fake: object,
    words: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = prepare_args(folder, tmp_path)
    assert main(args) == 0
    before = index_bytes(tmp_path, folder)
    fx.write_sine(folder / "new.wav", 0.3, SR)
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(target, name, fake)
        assert main(args) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("cpc_tf: error: cannot build the cache in ")
    assert words in err and "Traceback" not in err and "nothing was recorded" in err
    assert index_bytes(tmp_path, folder) == before  # the previous cache is intact
    root = ac.cache_root(folder, SR, tmp_path / "cache")
    assert not [n for n in os.listdir(root) if n.endswith(".tmp") or n.startswith(".spool")]
    assert main(args) == 0  # the file is retried, not skipped
    assert "decoded 1 file, reused 3" in capsys.readouterr().out
    assert "new.wav" in {c.path for c in ac.AudioCache.load(root).clips}


def test_skips_recorded_for_machine_faults_are_retried(
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Earlier versions recorded a full disk as 'corrupt'; such entries are decoded again."""
    args = prepare_args(folder, tmp_path)
    real = aw._decode_one_for_cache

    def old_behaviour(path: str, rel: str, *a: object) -> af.CacheDecodeResult:
        if rel == "1.wav":
            return af.CacheDecodeResult(
                rel, reason="corrupt", detail="OSError: [Errno 28] No space left on device"
            )
        if rel == "2.wav":
            return af.CacheDecodeResult(
                rel, reason="corrupt", detail="ran out of memory decoding it"
            )
        return real(path, rel, *a)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(aw, "_decode_one_for_cache", old_behaviour)
        assert main(args) == 0
    assert "skipped, corrupt (3)" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "decoded 2 files, reused 1" in out and "skipped, corrupt (1): broken.wav" in out
    )  # a bad file stays


# ------------------------------------------------------------------- header rates and memory
def test_absurd_header_rates_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "audio"
    fx.write_wav_claiming_rate(d / "one_hz.wav", 1, frames=20000)
    fx.write_wav_claiming_rate(d / "huge.wav", 4294967295)
    fx.write_wav_claiming_rate(d / "low.wav", af.MIN_SOURCE_RATE - 1)
    fx.write_wav_claiming_rate(d / "lowest_ok.wav", af.MIN_SOURCE_RATE, frames=500)
    for name in ("one_hz.wav", "huge.wav", "low.wav"):
        with pytest.raises(af.AudioFileError) as info:
            af.probe_audio(d / name)
        assert info.value.reason == af.REASON_BAD_RATE
    assert main(prepare_args(d, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "skipped 3 (bad sample rate: 3)" in out
    (clip,) = ac.AudioCache.load(ac.cache_root(d, SR, tmp_path / "cache")).clips
    assert clip.path == "lowest_ok.wav" and clip.num_samples == 500 * SR // af.MIN_SOURCE_RATE


def test_resampling_runs_in_bounded_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fx.write_sine(tmp_path / "a.wav", 6.0, 8000)
    with af.AudioReader(path) as reader:
        whole = list(af.iter_resampled(reader, 96000))
    assert max(len(b) for b in whole) > 500_000  # 65,536 source frames per block, x12
    monkeypatch.setattr(adec, "MAX_OUT_BLOCK", 50_000)  # read by iter_resampled
    with af.AudioReader(path) as reader:
        blocks = list(af.iter_resampled(reader, 96000))
    assert max(len(b) for b in blocks) <= 2 * 50_000 and len(blocks) > 8  # soxr adds its own burst
    bounded = np.concatenate(blocks)
    assert len(bounded) == sum(len(b) for b in whole) == af.resampled_length(48000, 8000, 96000)
    np.testing.assert_allclose(bounded, np.concatenate(whole), atol=1e-4)


def test_a_one_hz_header_keeps_prepare_small(tmp_path: Path) -> None:
    """A 40 KB file claiming 1 Hz once took 5.2 GB of memory; now it is refused at once."""
    d = tmp_path / "audio"
    fx.write_wav_claiming_rate(d / "one_hz.wav", 1, frames=20000)
    fx.write_wav_claiming_rate(d / "ok.wav", af.MIN_SOURCE_RATE, frames=20000)
    code = (
        "import resource, sys; from cpc_tf.cli import main; rc = main(sys.argv[1:]); "
        "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    # a clean environment: settings other tests leave in os.environ (thread pools, logical
    # devices) must not change the measurement
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *prepare_args(d, tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "skipped 1 (bad sample rate: 1)" in done.stdout
    rss_kb = int(done.stdout.split("maxrss_kb")[1].split()[0])
    # Measured 0.73-0.78 GB (most of it the TensorFlow import) when this file runs alone, but
    # 1.6-1.7 GB late in the full suite, for a reason not pinned down (the environment is clean
    # and the work identical); the regression this guards against took 5.2 GB.
    assert rss_kb < 2 * 2**20, f"peak RSS {rss_kb / 2**20:.2f} GB"


# ------------------------------------------------------------------- kill -9
def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_leaves_no_process_and_no_debris(tmp_path: Path) -> None:
    d = tmp_path / "audio"
    for i in range(24):
        fx.write_sine(d / f"{i:02d}.wav", 0.2, 22050, freq=200 + 30 * i)
    # prepare with a decoder slowed down to 0.3 s per file, so that it can be caught mid-way
    code = (
        "import sys, audio_fixtures; from cpc_tf.audio import files; "
        "files.decode_for_cache = audio_fixtures.slow_decode; "
        "from cpc_tf.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
        ),
    )
    args = prepare_args(d, tmp_path, workers=3) + ["--set", "data.min_shards=4"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = Path(ac.cache_root(d, SR, tmp_path / "cache"))
    try:
        deadline = time.monotonic() + 120
        kids: set[int] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            kids = _children(proc.pid)
            shards = list(root.glob("shard-*")) if root.is_dir() else []
            if (
                len(kids) >= 2 and shards
            ):  # workers (and the resource tracker) up, shards being written
                break
            time.sleep(0.05)
        assert proc.poll() is None, "prepare finished before it could be killed"
        kids = _children(proc.pid) | kids
        assert len(kids) >= 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.1)
        assert not [k for k in kids if _alive(k)], "processes started by prepare outlived it"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (root / ac.INDEX_NAME).exists()
    # the next run cleans up and gives the same cache as a clean build
    assert main(prepare_args(d, tmp_path)) == 0
    assert not [n for n in os.listdir(root) if n.endswith(".tmp") or n.startswith(".spool")]
    resumed = ac.AudioCache.load(str(root))
    clean = ac.open_cache(d, SR, cache_dir=tmp_path / "clean", workers=1, progress=False)
    assert [(c.path, c.num_samples) for c in resumed.clips] == [
        (c.path, c.num_samples) for c in clean.clips
    ]
    assert {p.rsplit("/", 1)[1] for p in resumed.shard_paths} == {
        n for n in os.listdir(root) if n.endswith(".tfrecord")
    }


def test_a_script_without_a_main_guard_finishes_and_is_told_why(tmp_path: Path) -> None:
    # 'spawn' workers re-run the caller's main script; without the guard each worker
    # used to call open_cache again and wait forever for its parent's cache lock
    d = tmp_path / "audio"
    for i in range(6):
        fx.write_sine(d / f"{i}.wav", 0.2, 8000, freq=300 + 50 * i)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from cpc_tf.audio.cache import open_cache\n"
        f"cache = open_cache({str(d)!r}, 8000, cache_dir={str(tmp_path / 'cache')!r}, "
        "workers=3, progress=False)\n"
        "print('clips', len(cache.clips))\n"
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "clips 6" in proc.stdout
    assert "if __name__" in proc.stderr


def test_orphaned_spools_of_remote_caches_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cpc_tf.audio import index

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f"cpc_tf_spool_{int(dead.stdout)}_abc123"
    live = tmp_path / f"cpc_tf_spool_{os.getppid()}_abc123"
    other = tmp_path / "cpc_tf_spool_notmine"
    for p in (stale, live, other):
        p.mkdir()
    index.remove_orphaned_spools(str(tmp_path))
    assert not stale.exists() and live.exists() and other.exists()


# ------------------------------------------------------------------- terminal safety and warnings
def test_printable_escapes_control_characters() -> None:
    assert printable("sub/d e ü.wav") == "sub/d e ü.wav"
    assert printable("a\nb.wav") == "a\\nb.wav"
    assert printable("\x1b[31mred.wav") == "\\x1b[31mred.wav"
    assert printable("x\udcffy\u202e\r\t") == "x\\xffy\\u202e\\r\\t"


def test_prepare_output_is_escaped_and_counts_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "audio"
    fx.write_sine(d / "fine.wav", 0.3, SR)
    fx.write_text(d / "evil\ncache: forged line.wav")
    sf.write(
        str(d / "\x1b[31mloud.wav"), fx.sine(0.3, SR, amp=1.6), SR, subtype="PCM_16"
    )  # clipped
    sf.write(
        str(d / "one.wav"), np.full(1, 0.3, np.float32), SR, subtype="PCM_16"
    )  # a single sample
    fx.write_sine(d / "blip.wav", 0.005, SR)  # 5 ms
    assert main(prepare_args(d, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and not any(
        line.startswith("cache: forged") for line in out.splitlines()
    )
    assert "skipped, not audio (1): evil\\ncache: forged line.wav" in out
    assert "warnings: clipped at full scale: 1, a single sample: 1, near-empty (< 10 ms): 1" in out
    assert "  warning, clipped at full scale (1): \\x1b[31mloud.wav" in out
    assert "  warning, a single sample (1): one.wav" in out
    assert "  warning, near-empty (< 10 ms) (1): blip.wav" in out
    cache = ac.AudioCache.load(ac.cache_root(d, SR, tmp_path / "cache"))
    clipped = {c.path: c.clipped for c in cache.clips}
    assert clipped["\x1b[31mloud.wav"] > 100 and clipped["fine.wav"] == 0
    index = json.loads(Path(cache.root, ac.INDEX_NAME).read_text())
    assert {c["path"]: c["clipped"] for c in index["clips"]} == clipped
