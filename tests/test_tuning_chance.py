"""A sweep whose trials do not beat chance says so instead of naming a best trial."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from helpers import TINY_CPC, TINY_SIMCLR, tiny_config

from cpc_tf.config import EvalConfig, replace_keys
from cpc_tf.evaluation.objective import probe_chance
from cpc_tf.models.registry import contrastive_chance
from cpc_tf.tuning import load_sweep
from cpc_tf.tuning.results import CHANCE_FILE, is_contrastive_accuracy, write_results


def test_contrastive_chance_counts_the_candidates() -> None:
    simclr = tiny_config(TINY_SIMCLR, train={"batch_size": 4})
    assert contrastive_chance(simclr) == pytest.approx(1 / 7)  # the other 2B - 1 views
    cpc = tiny_config(TINY_CPC, train={"batch_size": 4})
    assert cpc.model.negatives == "same_step" and contrastive_chance(cpc) == pytest.approx(1 / 4)
    drawn = replace_keys(cpc, {"model.negatives": "batch", "model.num_negatives": 10})
    assert contrastive_chance(drawn) == pytest.approx(1 / 11)
    every = replace_keys(cpc, {"model.negatives": "batch"})
    assert contrastive_chance(every) == pytest.approx(1 / (4 * every.num_windows))
    assert is_contrastive_accuracy("val_cpc_acc") and is_contrastive_accuracy("cpc_acc_k2")
    assert is_contrastive_accuracy("val_simclr_acc") and not is_contrastive_accuracy("val_loss")


def test_probe_chance_is_the_commonest_class_on_the_same_split() -> None:
    paths = np.array([f"f{i}.wav" for i in range(20)])
    labels = np.array(["a"] * 15 + ["b"] * 5)
    assert probe_chance(paths, labels, EvalConfig(test_fraction=0.2, seed=0)) == pytest.approx(0.75)


def _sweep(tmp_path: Path) -> object:
    data = dict(TINY_CPC)
    data["sweep"] = {
        "tuner": "random",
        "max_trials": 2,
        "space": {"model.c_dim": {"choice": [8, 16]}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_sweep(str(path))


def _tuner(scores: dict[str, float]) -> object:
    trials = {
        tid: SimpleNamespace(
            hyperparameters=SimpleNamespace(values={"model.c_dim": 8 * (i + 1)}),
            status="COMPLETED",
            score=score,
            message=None,
        )
        for i, (tid, score) in enumerate(scores.items())
    }
    return SimpleNamespace(oracle=SimpleNamespace(trials=trials))


@pytest.mark.parametrize(
    "scores, beaten", [({"0": 0.25, "1": 0.2}, False), ({"0": 0.25, "1": 0.3}, True)]
)
def test_results_name_a_best_trial_only_above_chance(
    tmp_path: Path, scores: dict, beaten: bool
) -> None:
    sweep, tune_dir = _sweep(tmp_path), tmp_path / "tune"
    for tid in scores:
        (tune_dir / "trials" / tid).mkdir(parents=True)
        (tune_dir / "trials" / tid / CHANCE_FILE).write_text(json.dumps({"chance": 0.25}))
    (tune_dir / "best.yaml").write_text("# from an earlier state of this sweep\n")
    write_results(_tuner(scores), sweep, str(tune_dir))
    md = (tune_dir / "results.md").read_text()
    assert ("No trial beats chance" in md) is not beaten
    assert (tune_dir / "best.yaml").exists() is beaten
    if beaten:
        assert "Best: trial 1" in md and "c_dim: 16" in (tune_dir / "best.yaml").read_text()
    else:
        assert (
            "The highest `val_cpc_acc`, 0.25 (trial 0), is not above its chance level, 0.25" in md
        )
