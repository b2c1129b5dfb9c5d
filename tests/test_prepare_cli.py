"""`cpc_tf prepare`: the command line in front of the cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import audio_fixtures as fx
import pytest

from cpc_tf.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "cpc_tf", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "audio"
    for i in range(3):
        fx.write_sine(d / f"{i}_take.wav", 0.3, 8000, freq=300 + 100 * i)
    fx.write_silent(d / "quiet.wav")
    fx.write_text(d / "notes.wav")
    fx.write_corrupt_wav(d / "broken.wav")
    return d


def test_prepare_in_process(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "prepare",
        "--audio-dir",
        str(folder),
        "--sample-rate",
        "16000",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--workers",
        "1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "decoded 6 files" in out
    summary = (
        "4 files, 1.4 s of audio, 4 shards; skipped 2 (corrupt: 1, not audio: 1); "
        "1 silent file flagged"
    )
    assert summary in out
    assert "skipped, corrupt (1): broken.wav" in out and "skipped, not audio (1): notes.wav" in out
    assert main(args) == 0
    assert "up to date, nothing decoded" in capsys.readouterr().out


def test_prepare_sample_rate_from_config_and_bad_values(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "prepare",
        "--audio-dir",
        str(folder),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--workers",
        "1",
    ]
    assert main(base + ["--set", "data.sample_rate=8000"]) == 0
    assert "(8000 Hz;" in capsys.readouterr().out
    assert main(base + ["--sample-rate", "10"]) == 2
    err = capsys.readouterr().err
    assert "data.sample_rate" in err and err.count("\n") == 1
    assert main(base + ["--workers", "-1"]) == 2
    capsys.readouterr()
    bad = tmp_path / "bad"
    bad.mkdir()
    fx.write_text(bad / "a.wav")
    assert (
        main(
            [
                "prepare",
                "--audio-dir",
                str(bad),
                "--sample-rate",
                "8000",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--workers",
                "1",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("cpc_tf: error: none of the 1 audio files") and "not audio: 1" in err


def test_prepare_subprocess_exit_codes(folder: Path, tmp_path: Path) -> None:
    missing = run_cli(
        "prepare",
        "--audio-dir",
        str(tmp_path / "missing"),
        "--sample-rate",
        "8000",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert (
        missing.stderr.strip().splitlines()[-1].startswith("cpc_tf: error: audio folder not found")
    )

    good = run_cli(
        "prepare",
        "--audio-dir",
        str(folder),
        "--sample-rate",
        "8000",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--workers",
        "2",
    )
    assert good.returncode == 0, good.stderr
    assert "Traceback" not in good.stderr
    assert "4 files" in good.stdout and "skipped 2" in good.stdout
