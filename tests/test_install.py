"""A built wheel works on its own: presets ship inside it and the CLI runs from any directory.

The wheel is built without network access (``--no-build-isolation``) and installed with
``--no-deps`` into a fresh virtual environment that sees the current environment's packages
(TensorFlow is not installed twice) but not the source tree: the current environment's
site-packages folders are added as plain paths, so its editable install of cpc_tf is not active
there.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO_ROOT

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel of this checkout installed in it."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(REPO_ROOT),
            "-w",
            str(wheels),
        ],
        cwd=root,
    )
    (wheel,) = wheels.glob("cpc_tf-*.whl")
    env_dir = root / "venv"
    _run([sys.executable, "-m", "venv", str(env_dir)], cwd=root)
    python = env_dir / "bin" / "python"
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=root,
        ).stdout.strip()
    )
    outer = [
        p
        for p in dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
        if Path(p).is_dir()
    ]
    (purelib / "_outer_env.pth").write_text("\n".join(outer) + "\n")
    _run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=root
    )
    return env_dir


def test_the_installed_package_is_the_wheel_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    out = _run(
        [str(venv / "bin" / "python"), "-c", "import cpc_tf; print(cpc_tf.__file__)"], cwd=tmp_path
    )
    location = Path(out.stdout.strip())
    assert venv in location.parents and REPO_ROOT not in location.parents


def test_presets_ship_inside_the_wheel(venv: Path, tmp_path: Path) -> None:
    out = _run(
        [str(venv / "bin" / "cpc_tf"), "summary", "--config", "cpc_conv1d_gru"], cwd=tmp_path
    )
    assert "5,654,784" in out.stdout  # the encoder of Bajorath et al. 2021, Table 1
    out = _run([str(venv / "bin" / "cpc_tf"), "demo", "--help"], cwd=tmp_path)
    assert "--out" in out.stdout
