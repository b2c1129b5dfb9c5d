"""CLI help, version, exit codes and one-line errors (run as a real subprocess)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cpc_tf import __version__
from cpc_tf.cli import build_parser, main

COMMANDS = ["prepare", "train", "extract", "export", "evaluate", "tune", "summary", "demo"]


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cpc_tf", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_version_and_help():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"cpc_tf {__version__}"
    out = run_cli("--help")
    assert out.returncode == 0
    for cmd in COMMANDS:
        assert cmd in out.stdout


@pytest.mark.parametrize(
    "command, flags",
    [
        (
            "train",
            ["--audio-dir", "--config", "--out", "--epochs", "--set", "--strategy", "--resume"],
        ),
        (
            "extract",
            [
                "--run",
                "--random-init",
                "--config",
                "--audio-dir",
                "--out",
                "--crops-per-file",
                "--labels",
                "--tensorboard",
            ],
        ),
        ("export", ["--run", "--format", "--out", "--force", "--name", "--sample-rate"]),
        (
            "evaluate",
            [
                "--embeddings",
                "--test",
                "--folds",
                "--test-fraction",
                "--group-by",
                "--baseline",
                "--label-fractions",
                "--reduce",
                "--classifier",
                "--out",
            ],
        ),
        ("prepare", ["--audio-dir", "--config", "--sample-rate", "--cache-dir"]),
        ("tune", ["--audio-dir", "--config", "--out", "--max-trials"]),
        ("summary", ["--config", "--set"]),
        ("demo", ["--out"]),
    ],
)
def test_each_help_lists_the_contract_flags(command, flags, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in flags:
        assert flag in text, f"{command} --help lacks {flag}"


def test_usage_errors_exit_2_with_one_line(capsys):
    assert main(["train", "--bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cpc_tf: error:") and "unrecognized arguments: --bogus" in err
    assert "\n" not in err
    assert main(["summary"]) == 2  # --config is required
    assert "--config" in capsys.readouterr().err


def test_unknown_key_suggests_the_right_one(tmp_path):
    out = run_cli(
        "train",
        "--audio-dir",
        str(tmp_path),
        "--set",
        "model.encodr=conv1d",
        "--out",
        str(tmp_path / "run"),
    )
    assert out.returncode == 2
    assert "unknown config key 'model.encodr' (did you mean 'model.encoder'?)" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_missing_config_file_is_exit_2(tmp_path):
    out = run_cli("summary", "--config", str(tmp_path / "nope.yaml"))
    assert out.returncode == 2 and "config file not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_unregistered_encoder_is_caught_with_a_suggestion():
    out = run_cli(
        "summary",
        "--config",
        "configs/cpc_conv1d_gru.yaml",
        "--set",
        "model.encoder=conv2d",
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]),
    )
    assert out.returncode == 2
    assert "model.encoder: 'conv2d' is not registered (did you mean 'conv1d'?)" in out.stderr
