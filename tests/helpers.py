"""Small shared helpers for the tests: tiny configs and synthetic audio folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cpc_tf.config import Config, from_dict
from cpc_tf.synth import SynthSpec, synth_clip, write_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]

# A CPC small enough for a CPU test: 6 windows of 800 samples at 4 kHz.
TINY_CPC = {
    "name": "tiny_cpc",
    "data": {"sample_rate": 4000, "clip_seconds": 1.2, "shuffle_buffer": 16},
    "model": {
        "encoder": "conv1d",
        "autoregressor": "gru",
        "z_dim": 16,
        "c_dim": 16,
        "context_steps": 4,
        "predict_steps": 2,
        "conv1d": {"filters": 16, "hidden_units": 32, "dropout": 0.0},
    },
    "train": {"batch_size": 4, "epochs": 2, "steps_per_epoch": 3, "learning_rate": 1e-3},
    "eval": {"crops_per_file": 2, "batch_size": 8},
}

TINY_SIMCLR = {
    "name": "tiny_simclr",
    "data": {"sample_rate": 8000, "crop_samples": 2187, "shuffle_buffer": 16},
    "model": {
        "family": "simclr",
        "encoder": "samplecnn",
        "projection_dims": [16, 8],
        "samplecnn": {"channels": [8, 8, 16, 16, 16, 16], "stem_filters": 8, "out_filters": 16},
    },
    "augment": {
        "lowpass_min_hz": 1000,
        "lowpass_max_hz": 2000,
        "highpass_min_hz": 100,
        "highpass_max_hz": 500,
    },
    "train": {"batch_size": 4, "epochs": 2, "steps_per_epoch": 2, "learning_rate": 1e-3},
    "eval": {"crops_per_file": 2, "batch_size": 8},
}


def tiny_config(base: dict, **sections: dict) -> Config:
    """A validated copy of `base` with per-section overrides."""
    merged: dict = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for section, values in sections.items():
        merged.setdefault(section, {}).update(values)
    return from_dict(merged)


def set_flags(cfg_dict: dict, prefix: str = "") -> list[str]:
    """A nested config dict as a list of --set key=value flags."""
    flags = []
    for k, v in cfg_dict.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flags += set_flags(v, key + ".")
        else:
            flags += ["--set", f"{key}={v}"]
    return flags


def synth_folder(
    root: Path, classes=("strings", "drums"), files: int = 4, seconds: float = 2.0, rate: int = 8000
) -> Path:
    """A small labelled folder of synthetic music (class sub-folders)."""
    write_dataset(
        str(root),
        SynthSpec(classes=tuple(classes), files_per_class=files, seconds=seconds, sample_rate=rate),
    )
    return root


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m cpc_tf ARGS` in a subprocess, capturing its output."""
    e = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "cpc_tf", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=timeout,
    )


def synth_labelled_folder(
    root: Path,
    classes=("strings", "bells"),
    speakers=("ann", "bob", "cid"),
    takes: int = 2,
    seconds: float = 1.5,
    rate: int = 8000,
) -> Path:
    """Files named like the spoken-digit set, ``{label}_{speaker}_{take}.wav``, flat in `root`.

    The "digit" is the class index, and each class is a synthetic instrument, so
    ``regex:^(\\d)_`` gives the class and ``regex:^\\d_([a-z]+)_`` the speaker.
    """
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    for c, kind in enumerate(classes):
        for s_idx, speaker in enumerate(speakers):
            for t in range(takes):
                audio = synth_clip(kind, seconds, rate, seed=1000 * c + 10 * s_idx + t)
                sf.write(root / f"{c}_{speaker}_{t}.wav", audio, rate, subtype="PCM_16")
    return root
