"""`cpc_tf tune` end to end on tiny synthetic audio (issue #8).

A sweep runs, writes its result files, survives a SIGKILL, rejects bad sweep files
before any trial, records a diverging trial as FAILED and goes on, and optimises the
probe accuracy with --labels. Sweeps run in-process through `cpc_tf.cli.main` (one
TensorFlow import) except the one that is killed, which needs its own process.
"""

from __future__ import annotations

import copy
import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import TINY_CPC, run_cli, synth_folder

from cpc_tf.cli import main
from cpc_tf.config import load_config

# Two tiny epochs per trial; the validation objective needs held-out files.
BASE: dict[str, Any] = copy.deepcopy(TINY_CPC)
BASE["data"]["validation_fraction"] = 0.25
BASE["train"].update({"epochs": 2, "steps_per_epoch": 2})
BASE["eval"].update({"probe_epochs": 2})

SPACE = {
    "train.learning_rate": {"float": [1.0e-4, 1.0e-2], "log": True},
    "model.c_dim": {"int": [8, 24], "step": 8},
}


@pytest.fixture(autouse=True)
def no_chance_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests exercise the sweep machinery on tiny models trained for four steps, whose
    contrastive accuracy sits at chance; the chance rule has its own tests
    (tests/test_tuning_chance.py), so here every accuracy counts as above chance."""
    import cpc_tf.models.registry as registry

    monkeypatch.setattr(registry, "contrastive_chance", lambda cfg: 0.0)


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A labelled synthetic folder (2 classes x 4 files of 2 s) and a shared cache folder."""
    root = tmp_path_factory.mktemp("tune_data")
    folder = synth_folder(root / "audio", files=4, seconds=2.0, rate=8000)
    return str(folder), str(root / "cache")


def write_sweep(
    path: Path, space: dict | None = None, base: dict | None = None, **sweep: Any
) -> str:
    """A sweep file: the tiny CPC base plus a `sweep:` section."""
    data = copy.deepcopy(base or BASE)
    data["sweep"] = {
        "tuner": "random",
        "max_trials": 3,
        "space": SPACE if space is None else space,
        **sweep,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def tune_args(audio: tuple[str, str], sweep: str, out: Path, *extra: str) -> list[str]:
    folder, cache = audio
    return [
        "tune",
        "--audio-dir",
        folder,
        "--config",
        sweep,
        "--out",
        str(out),
        "--cache-dir",
        cache,
        *extra,
    ]


def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file under `folder`."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_sweep_of_three_trials_writes_results_and_best_config(audio, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep.yaml")
    out = tmp_path / "tune"
    t0 = time.perf_counter()
    assert main(tune_args(audio, sweep, out)) == 0
    elapsed = time.perf_counter() - t0
    assert elapsed < 120, f"a 3-trial tiny sweep took {elapsed:.0f} s"
    assert "3 completed, 0 failed" in capsys.readouterr().out

    rows = read_rows(out)
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    assert list(rows[0]) == [
        "trial",
        "status",
        "train.learning_rate",
        "model.c_dim",
        "val_cpc_acc",
        "seconds",
        "error",
    ]
    for r in rows:
        assert r["status"] == "COMPLETED"
        assert 1e-4 <= float(r["train.learning_rate"]) <= 1e-2
        assert r["model.c_dim"] in ("8", "16", "24")
        assert 0.0 <= float(r["val_cpc_acc"]) <= 1.0
        assert float(r["seconds"]) > 0
        assert (out / "trials" / r["trial"] / "model.keras").is_file()  # a normal run folder
    assert (out / "results.md").read_text().count("| COMPLETED |") == 3

    best_path = out / "best.yaml"
    best = load_config(str(best_path))
    best_id = re.match(r"# best trial (\w+) ", best_path.read_text()).group(1)
    best_row = next(r for r in rows if r["trial"] == best_id)
    assert best.train.learning_rate == pytest.approx(float(best_row["train.learning_rate"]))
    assert best.model.c_dim == int(best_row["model.c_dim"])
    assert (
        best.model.z_dim == BASE["model"]["z_dim"] and best.train.epochs == BASE["train"]["epochs"]
    )
    assert main(["summary", "--config", str(best_path)]) == 0
    assert "total" in capsys.readouterr().out.lower()


def test_killed_sweep_continues_without_repeating_finished_trials(audio, tmp_path):
    sweep = write_sweep(tmp_path / "sweep.yaml")
    out = tmp_path / "tune"
    args = tune_args(audio, sweep, out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cpc_tf", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    finished: list[str] = []
    try:
        deadline = time.time() + 150
        while time.time() < deadline and proc.poll() is None:
            if (out / "results.csv").exists():
                finished = [r["trial"] for r in read_rows(out) if r["status"] == "COMPLETED"]
                if finished:
                    break
            time.sleep(0.1)
        assert finished, "no trial completed before the deadline"
        assert proc.poll() is None, "the sweep ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert len(finished) < 3
    before = {t: snapshot(out / "trials" / t) for t in finished}

    assert main(args) == 0  # the same command again
    rows = read_rows(out)
    assert sorted(r["trial"] for r in rows) == ["0", "1", "2"]
    assert all(r["status"] == "COMPLETED" for r in rows)
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0", "1", "2"]
    for t in finished:
        assert snapshot(out / "trials" / t) == before[t], f"finished trial {t} was touched"

    assert main(args) == 0  # a finished sweep: nothing more to do
    assert len(read_rows(out)) == 3


@pytest.mark.parametrize(
    "space, sweep_fields, message",
    [
        ({"train.learnin_rate": {"float": [1e-4, 1e-2]}}, {}, "did you mean 'train.learning_rate'"),
        ({"train.learning_rate": {"float": [1e-3, 1e-3]}}, {}, "empty or inverted range"),
        ({"model.c_dim": {"int": [24, 8]}}, {}, "empty or inverted range"),
        (
            {"model.conv1d.dropout": {"float": [0.0, 0.3], "log": True}},
            {},
            "log range needs low > 0",
        ),
        (SPACE, {"tuner": "grid"}, "'grid' is not one of random, bayesian, hyperband"),
        ({"model.c_dim": {"float": [8, 24]}}, {}, "integer setting"),
        (SPACE, {"objective": "val_acc"}, "not a metric of this model"),
        ({}, {}, "sweep.space must map config keys"),
        ({"model.c_dim": {"int": [8, 24], "step": 0.5}}, {}, "int step must be a whole number"),
        ({"train.learning_rate": {"float": [0.0, 1e-3]}}, {}, "out of range"),
    ],
)
def test_bad_sweep_is_one_line_exit_2_before_any_trial(
    audio, tmp_path, capsys, space, sweep_fields, message
):
    sweep = write_sweep(tmp_path / "sweep.yaml", space=space, **sweep_fields)
    out = tmp_path / "tune"
    assert main(tune_args(audio, sweep, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cpc_tf: error:") and message in err[0], err
    assert not (out / "trials").exists() and not (out / "keras_tuner").exists()


def test_bad_sweep_from_the_command_line(audio, tmp_path):
    sweep = write_sweep(
        tmp_path / "sweep.yaml", space={"train.learning_rate": {"float": [0.0, 1e-3], "log": True}}
    )
    out = tmp_path / "tune"
    proc = run_cli(*tune_args(audio, sweep, out), timeout=120)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "a log range needs low > 0" in err[0], proc.stderr
    assert not out.exists()


def test_diverging_trial_is_failed_and_the_sweep_goes_on(audio, tmp_path, capsys):
    # Four trials exhaust the four combinations, whatever order the seeded draws take: two diverge
    # and two complete, and the earliest failure is never the last trial, so a trial after a
    # failure must have run.
    space = {
        "train.learning_rate": {"choice": [1.0e-3, 1.0e30]},
        "model.c_dim": {"int": [8, 16], "step": 8},
    }
    out = tmp_path / "tune"
    assert (
        main(tune_args(audio, write_sweep(tmp_path / "sweep.yaml", space=space, max_trials=4), out))
        == 0
    )
    rows = read_rows(out)
    assert len(rows) == 4
    failed = [r for r in rows if r["status"] == "FAILED"]
    completed = [r for r in rows if r["status"] == "COMPLETED"]
    assert len(failed) == 2 and len(completed) == 2
    assert {(float(r["train.learning_rate"]), int(r["model.c_dim"])) for r in rows} == {
        (lr, c) for lr in (1e-3, 1e30) for c in (8, 16)
    }
    assert min(int(r["trial"]) for r in failed) < max(int(r["trial"]) for r in rows)  # it went on
    for r in failed:
        assert float(r["train.learning_rate"]) == 1e30 and r["val_cpc_acc"] == ""
        assert "NaN" in r["error"]
    assert all(float(r["train.learning_rate"]) == 1e-3 for r in completed)
    assert "FAILED" in (out / "results.md").read_text()
    assert load_config(str(out / "best.yaml")).train.learning_rate == 1e-3
    capsys.readouterr()

    # A sweep none of whose trials completes says so in one line and exits 1.
    out2 = tmp_path / "tune_all_failed"
    sweep2 = write_sweep(
        tmp_path / "sweep2.yaml", space={"train.learning_rate": {"choice": [1.0e30]}}
    )
    assert main(tune_args(audio, sweep2, out2)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cpc_tf: error: no trial of the sweep completed"), err
    assert read_rows(out2)[0]["status"] == "FAILED"


def test_labels_objective_is_the_probe_accuracy(audio, tmp_path):
    out = tmp_path / "tune"
    sweep = write_sweep(
        tmp_path / "sweep.yaml",
        space={"train.learning_rate": {"choice": [1.0e-3, 3.0e-3]}},
        max_trials=2,
    )
    assert main(tune_args(audio, sweep, out, "--labels", "folder")) == 0
    rows = read_rows(out)
    assert len(rows) == 2 and "probe_acc" in rows[0] and "val_cpc_acc" not in rows[0]
    for r in rows:
        assert r["status"] == "COMPLETED" and 0.0 <= float(r["probe_acc"]) <= 1.0
    assert "objective `probe_acc`" in (out / "results.md").read_text()
    assert (out / "best.yaml").read_text().startswith("# best trial")


def test_continuing_with_a_different_sweep_is_refused(audio, tmp_path, capsys):
    out = tmp_path / "tune"
    os.makedirs(out)
    first = write_sweep(tmp_path / "a.yaml")
    from cpc_tf.tuning import _check_same_sweep, load_sweep

    _check_same_sweep(load_sweep(first), str(out))  # what a first run records
    other = write_sweep(tmp_path / "b.yaml", space={"model.c_dim": {"int": [8, 24], "step": 8}})
    assert main(tune_args(audio, other, out)) == 2
    err = capsys.readouterr().err
    assert "holds a different sweep" in err and "space" in err
    assert not (out / "trials").exists()


def test_sweep_file_forms(tmp_path):
    """Text numbers (YAML's 1e-5), log steps, and choices among lists round-trip."""
    import keras_tuner as kt

    from cpc_tf.tuning import load_sweep

    space = {
        "train.learning_rate": {"float": ["1e-5", "1e-3"], "log": True},
        "model.c_dim": {"int": [8, 32], "log": True, "step": 2},
        "model.projection_dims": {"choice": [[16, 8], [32, 8]]},
    }
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", space=space))
    lr, c_dim, dims = sweep.space
    assert (lr.low, lr.high, lr.log) == (1e-5, 1e-3, True)
    hp = kt.HyperParameters()
    assert dims.sample(hp) in ([16, 8], [32, 8])
    assert c_dim.sample(hp) in (8, 16, 32)
    values = {p.key: p.sample(hp) for p in sweep.space}
    assert isinstance(values["model.projection_dims"], list)
    assert sweep.objective == "val_cpc_acc" and sweep.direction == "max"
    assert load_sweep(write_sweep(tmp_path / "l.yaml", objective="val_loss")).direction == "min"
    assert load_sweep(write_sweep(tmp_path / "p.yaml"), labels="folder").objective == "probe_acc"


@pytest.mark.parametrize("name", ["sweep_cpc.yaml", "sweep_simclr.yaml"])
def test_shipped_sweep_files_are_valid(name):
    from cpc_tf.tuning import load_sweep

    sweep = load_sweep(str(Path(__file__).resolve().parents[1] / "configs" / name))
    assert sweep.space and sweep.tuner in ("random", "bayesian")
