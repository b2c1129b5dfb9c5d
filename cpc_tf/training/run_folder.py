"""The run folder: its paths, its JSON state file and its CSV history.

The run folder (ARCHITECTURE.md, "Run folder") is written as::

    RUN_DIR/config.yaml        full resolved config, before the first step
    RUN_DIR/run.json           audio folder, cache, status, epochs completed
    RUN_DIR/model.keras        final model;  RUN_DIR/encoder.keras  the encoder alone
    RUN_DIR/checkpoints/       per-epoch weights + backup/ (BackupAndRestore state)
    RUN_DIR/history.csv        per-epoch loss and metrics;  RUN_DIR/tensorboard/
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from cpc_tf.config import Config, from_dict, read_yaml
from cpc_tf.errors import DataError
from cpc_tf.fileio import atomic_write, atomic_write_text

CONFIG_FILE = "config.yaml"
STATE_FILE = "run.json"
# ------------------------------------------------------------------ run folder
@dataclass
class RunFolder:
    """Paths of a run folder, and its small JSON state file."""

    root: str

    @property
    def config_path(self) -> str:
        return os.path.join(self.root, CONFIG_FILE)

    @property
    def state_path(self) -> str:
        return os.path.join(self.root, STATE_FILE)

    @property
    def model_path(self) -> str:
        return os.path.join(self.root, "model.keras")

    @property
    def encoder_path(self) -> str:
        return os.path.join(self.root, "encoder.keras")

    @property
    def saved_model_path(self) -> str:
        return os.path.join(self.root, "saved_model")

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.root, "checkpoints")

    @property
    def backup_dir(self) -> str:
        return os.path.join(self.checkpoint_dir, "backup")

    @property
    def history_path(self) -> str:
        return os.path.join(self.root, "history.csv")

    @property
    def tensorboard_dir(self) -> str:
        return os.path.join(self.root, "tensorboard")

    def is_run(self) -> bool:
        return os.path.isfile(self.config_path)

    def load_config(self) -> Config:
        if not self.is_run():
            raise DataError(f"{self.root} is not a cpc_tf run folder (no {CONFIG_FILE})")
        return from_dict(read_yaml(self.config_path))

    def read_state(self) -> dict[str, Any]:
        try:
            with open(self.state_path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def write_state(self, **updates: Any) -> None:
        state = self.read_state()
        state.update(updates)
        atomic_write_text(self.state_path, json.dumps(state, indent=2, sort_keys=True))

    def ensure_writable(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test-", delete=True)
            probe.close()
        except OSError as exc:
            raise DataError(f"cannot write the run folder {self.root}: {exc.strerror or exc}") from None


def truncate_history(path: str, keep_epochs: int) -> None:
    """Drop CSV rows of epochs at or after `keep_epochs` (an epoch redone on resume)."""
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and r[0].isdigit() and int(r[0]) < keep_epochs]
    if len(kept) == len(body):
        return

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([header] + kept)

    atomic_write(write, path)


def history_rows(run_dir: str) -> list[dict[str, float]]:
    """The per-epoch rows of a run's history.csv as floats."""
    path = RunFolder(run_dir).history_path
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]

