"""The results of a sweep: results.csv, results.md and best.yaml, rewritten after each trial."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from typing import Any

import keras_tuner as kt

from cpc_tf.config import dump_config, replace_keys
from cpc_tf.fileio import atomic_write_text
from cpc_tf.tuning.sweep import Sweep

TRIAL_TIME_FILE = "trial_time.json"
CHANCE_FILE = "chance.json"
_CONTRASTIVE_ACCURACY = re.compile(r"^(val_)?(cpc|simclr)_acc(_k\d+)?$")


def is_contrastive_accuracy(objective: str) -> bool:
    """Whether `objective` is a contrastive accuracy, whose chance level the config gives."""
    return bool(_CONTRASTIVE_ACCURACY.match(objective))


def write_chance(run_dir: str, chance: float) -> None:
    """Record the chance level of a trial's objective beside its run folder."""
    if os.path.isdir(run_dir):
        atomic_write_text(os.path.join(run_dir, CHANCE_FILE), json.dumps({"chance": chance}))


def _read_chance(tune_dir: str, trial_id: str) -> float | None:
    for sub in ("", "exec_0"):
        try:
            path = os.path.join(tune_dir, "trials", trial_id, sub, CHANCE_FILE)
            with open(path, encoding="utf-8") as fh:
                return float(json.load(fh)["chance"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _read_seconds(run_dir: str) -> float:
    try:
        with open(os.path.join(run_dir, TRIAL_TIME_FILE), encoding="utf-8") as fh:
            return float(json.load(fh)["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


# ------------------------------------------------------------------ results
def _last_error_line(message: str | None) -> str:
    """The last line of a trial's traceback, without the exception's module path."""
    lines = [ln.strip() for ln in (message or "").strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    match = re.match(r"^[\w.]*(Error|Exception|Interrupt)[\w]*: ", line)
    return line[match.end() :] if match else line


def _first_sentence(text: str) -> str:
    head, sep, _ = text.partition(". ")
    return head + "." if sep else text


def _trial_rows(tuner: kt.Tuner, sweep: Sweep, tune_dir: str) -> list[dict[str, Any]]:
    """One row per trial Keras Tuner knows of, in trial order."""
    rows = []
    for trial_id in sorted(tuner.oracle.trials, key=lambda t: (len(t), t)):
        trial = tuner.oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row: dict[str, Any] = {"trial": trial_id, "status": str(trial.status)}
        row.update({p.key: p.decode(values.get(p.key)) for p in sweep.space})
        if sweep.tuner == "hyperband":
            row["epochs"] = values.get("tuner/epochs")
        score = trial.score if trial.status == "COMPLETED" else None
        row[sweep.objective] = (
            None if score is None or not math.isfinite(score) else round(float(score), 6)
        )
        seconds = _read_seconds(os.path.join(tune_dir, "trials", trial_id))
        if not seconds and sweep.executions_per_trial > 1:
            seconds = sum(
                _read_seconds(os.path.join(tune_dir, "trials", trial_id, f"exec_{i}"))
                for i in range(sweep.executions_per_trial)
            )
        row["seconds"] = round(seconds, 1) if seconds else None
        row["error"] = _last_error_line(trial.message)[:300] if trial.status == "FAILED" else ""
        row["chance"] = _read_chance(tune_dir, trial_id)
        rows.append(row)
    return rows


def _best_first(rows: list[dict[str, Any]], sweep: Sweep) -> list[dict[str, Any]]:
    sign = -1 if sweep.direction == "max" else 1
    return sorted(
        rows, key=lambda r: (r[sweep.objective] is None, sign * (r[sweep.objective] or 0.0))
    )


def _beats_chance(row: dict[str, Any], sweep: Sweep) -> bool:
    """Whether a maximised objective lies above its recorded chance level (True when unknown)."""
    chance, value = row.get("chance"), row[sweep.objective]
    return sweep.direction != "max" or chance is None or value is None or value > chance


def _no_trial_beats_chance(best: dict[str, Any], sweep: Sweep) -> str:
    value = _fmt(best[sweep.objective])
    return (
        f"**No trial beats chance.** The highest `{sweep.objective}`, {value} "
        f"(trial {best['trial']}), is not above its chance level, {_fmt(best['chance'])} (guessing "
        "among the candidates, or the commonest class for a probe); so no best trial is named and "
        "no best.yaml is written. Train longer, or search other settings."
    )


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def write_results(tuner: kt.Tuner, sweep: Sweep, tune_dir: str) -> list[dict[str, Any]]:
    """results.csv (trial order), results.md (best first) and best.yaml, written atomically."""
    rows = _trial_rows(tuner, sweep, tune_dir)
    if not rows:
        return rows
    columns = ["trial", "status", *[p.key for p in sweep.space]]
    if sweep.tuner == "hyperband":
        columns.append("epochs")
    columns += [sweep.objective, "seconds", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(
        {
            c: ("" if r[c] is None else json.dumps(r[c]) if isinstance(r[c], list) else r[c])
            for c in columns
        }
        for r in rows
    )
    atomic_write_text(os.path.join(tune_dir, "results.csv"), buf.getvalue())

    ranked = _best_first(rows, sweep)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("COMPLETED", "FAILED")}
    md = [
        f"# Sweep results: {sweep.base.name}",
        "",
        f"{sweep.tuner} search, objective `{sweep.objective}` ({sweep.direction}imise); "
        f"{len(rows)} trial(s): {counts['COMPLETED']} completed, {counts['FAILED']} failed.",
        "",
        "Searched: " + "; ".join(f"`{p.key}` {p.describe()}" for p in sweep.space),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    md += [
        "| "
        + " | ".join(_fmt(_first_sentence(r[c]) if c == "error" else r[c]) for c in columns)
        + " |"
        for r in ranked
    ]
    best = next((r for r in ranked if r[sweep.objective] is not None), None)
    if best and not _beats_chance(best, sweep):
        md += ["", _no_trial_beats_chance(best, sweep)]
        best_path = os.path.join(tune_dir, "best.yaml")
        if os.path.exists(best_path):  # written by this sweep while a trial still beat chance
            os.remove(best_path)
        best = None
    if best:
        cfg = replace_keys(
            sweep.base,
            {**{p.key: best[p.key] for p in sweep.space}, "name": f"{sweep.base.name}_best"},
        )
        atomic_write_text(
            os.path.join(tune_dir, "best.yaml"),
            f"# best trial {best['trial']} of the sweep in {tune_dir}: "
            f"{sweep.objective} = {best[sweep.objective]}\n" + dump_config(cfg),
        )
        md += [
            "",
            f"Best: trial {best['trial']}, {sweep.objective} = {_fmt(best[sweep.objective])}; "
            f"its complete config is `best.yaml` "
            f"(`cpc_tf train --config {os.path.join(tune_dir, 'best.yaml')} ...`).",
        ]
    atomic_write_text(os.path.join(tune_dir, "results.md"), "\n".join(md) + "\n")
    return rows
