"""The run folder: its paths, its JSON state file and its CSV history.

The run folder (docs/design.md, "Run folder") is written as::

    RUN_DIR/run.json           marker, audio folder, cache, status, epochs completed
    RUN_DIR/config.yaml        full resolved config, before the first step
    RUN_DIR/model.keras        final model;  RUN_DIR/encoder.keras  the encoder alone
    RUN_DIR/checkpoints/       the last per-epoch weights + backup/ (BackupAndRestore state)
    RUN_DIR/history.csv        per-epoch loss and metrics;  RUN_DIR/tensorboard/

What makes a folder a run is ``run.json`` carrying :data:`RUN_MARKER` (written before
anything else): ``train`` never writes into a non-empty folder without it unless
forced, so a user's own files are never overwritten, appended to or cleaned up.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from cpc_tf.config import Config, from_dict, read_yaml, to_dict
from cpc_tf.errors import ConfigError, DataError
from cpc_tf.fileio import TEMP_PREFIX, atomic_write, atomic_write_text

CONFIG_FILE = "config.yaml"
STATE_FILE = "run.json"
RUN_MARKER = "cpc_tf_run"  # run.json key; its value is the run folder's format version
RUN_FORMAT = 1
# Settings a checkpoint depends on: --resume refuses a config.yaml edited in any of them.
RESUME_FIXED_KEYS = (
    "model.",
    "data.sample_rate",
    "data.clip_seconds",
    "data.crop_samples",
    "train.supervised",
    "train.optimizer",
    "train.mixed_precision",
)


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

    def is_owned(self) -> bool:
        """True when run.json says cpc_tf wrote this folder (also for runs older than the
        marker).
        """
        state = self.read_state()
        legacy = (
            "status" in state and "steps_per_epoch" in state and os.path.isfile(self.config_path)
        )
        return RUN_MARKER in state or legacy

    def is_run(self) -> bool:
        """A run that can be resumed: cpc_tf's run.json and the config it trains with."""
        return self.is_owned() and os.path.isfile(self.config_path)

    def check_target(self, resume: bool, force: bool = False) -> None:
        """Refuse a folder that `train` must not write into.

        A new run needs an empty (or missing) folder, or one cpc_tf itself started;
        ``force`` accepts any folder (its files of the same names are replaced).
        """
        if resume:
            if not self.is_run():
                raise ConfigError(
                    f"--resume: {self.root} is not a cpc_tf run folder (no {STATE_FILE} "
                    f"written by cpc_tf, or no {CONFIG_FILE}); start a new run without --resume"
                )
            return
        check_output_folder(self.root, owned=force or self.is_owned(), what="a cpc_tf run folder")

    def check_resume_config(self, cfg: Config) -> None:
        """Refuse to resume with a config.yaml edited in a setting the checkpoints depend on."""
        started = self.read_state().get("fixed_settings")
        if not isinstance(started, dict):
            return  # a run older than this record
        now = fixed_settings(cfg)
        changed = sorted(k for k in set(started) | set(now) if started.get(k) != now.get(k))
        if changed:
            shown = ", ".join(f"{k}: {started.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
            more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
            raise ConfigError(
                f"--resume: {self.config_path} was edited since the run started ({shown}{more}); "
                "the checkpoints need the original values: restore them, or start a new run"
            )

    def load_config(self) -> Config:
        """The run's config.yaml (reading needs only that file; resuming needs run.json too)."""
        if not os.path.isfile(self.config_path):
            raise DataError(f"{self.root} is not a cpc_tf run folder (no {CONFIG_FILE})")
        return from_dict(read_yaml(self.config_path))

    def read_state(self) -> dict[str, Any]:
        try:
            with open(self.state_path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def write_state(self, clear: tuple[str, ...] = (), **updates: Any) -> None:
        """Merge `updates` into run.json (atomically, keys in `clear` dropped), marking it as a
        run.
        """
        state = {k: v for k, v in self.read_state().items() if k not in clear}
        state.update(updates)
        state[RUN_MARKER] = RUN_FORMAT
        atomic_write_text(self.state_path, json.dumps(state, indent=2, sort_keys=True))

    def ensure_writable(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(
                dir=self.root, prefix=f"{TEMP_PREFIX}write-test-", delete=True
            )
            probe.close()
        except OSError as exc:
            raise DataError(
                f"cannot write the run folder {self.root}: {exc.strerror or exc}"
            ) from None


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
    """The per-epoch rows of a run's history.csv as floats (cells that are no number left out)."""
    path = RunFolder(run_dir).history_path
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [_numbers(row) for row in csv.DictReader(fh)]


def _numbers(row: dict[str, str | None]) -> dict[str, float]:
    """The numeric cells of a CSV row (CSVLogger writes ``NA`` for a value it did not get)."""
    out = {}
    for k, v in row.items():
        try:
            out[k] = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
    return out


def check_output_folder(path: str, owned: bool, what: str) -> None:
    """Refuse to write into `path` when it is a non-empty folder that cpc_tf did not make (not
    `owned`).

    The rule shared by ``train --out`` and ``tune --out``; ``--force`` (``owned=True``) overrides
    it.
    """
    if owned or not os.path.isdir(path) or not os.listdir(path):
        return
    raise ConfigError(
        f"{path} is not empty and is not {what}; use a new or empty --out "
        "(or pass --force to write into it anyway)"
    )


def fixed_settings(cfg: Config) -> dict[str, Any]:
    """The values of :data:`RESUME_FIXED_KEYS` in `cfg`, as flat dotted keys."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = node

    walk(to_dict(cfg), "")
    return {k: v for k, v in flat.items() if k.startswith(RESUME_FIXED_KEYS)}


def folder_bytes(path: str) -> int:
    """Bytes held by the files under `path` (0 when it does not exist)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``212 MB``, ``1.9 GB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if n >= 10 or unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
