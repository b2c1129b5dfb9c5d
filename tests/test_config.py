"""Config parsing, overrides and one-line validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cpc_tf.config import (Config, all_keys, dump_config, from_dict, get_key, load_config,
                           parse_override, replace_keys)
from cpc_tf.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_seed():
    cfg = Config()
    assert (cfg.data.sample_rate, cfg.data.clip_seconds) == (4410, 4.0)
    assert (cfg.model.context_steps, cfg.model.predict_steps) == (27, 3)
    assert cfg.window_samples == 588 and cfg.num_windows == 30
    assert (cfg.train.batch_size, cfg.train.learning_rate) == (8, 1e-5)
    assert cfg.model.conv1d.strides == [5, 4, 2, 2, 2]


def test_overrides_are_typed():
    cfg = load_config(None, ["train.learning_rate=3e-4", "train.epochs=3", "model.conv1d.strides=[4,4,2,2,2]",
                             "train.mixed_precision=true", "data.labels=regex:^(\\d)_"])
    assert cfg.train.learning_rate == pytest.approx(3e-4) and isinstance(cfg.train.learning_rate, float)
    assert cfg.train.epochs == 3
    assert cfg.model.conv1d.strides == [4, 4, 2, 2, 2]
    assert cfg.train.mixed_precision is True
    assert cfg.data.labels == "regex:^(\\d)_"


@pytest.mark.parametrize("override, message", [
    ("model.encodr=conv1d", "unknown config key 'model.encodr'; did you mean 'model.encoder'?"),
    ("train.epochs=abc", "train.epochs: expected an integer, got 'abc'"),
    ("train.epochs=0", "train.epochs: 0 is out of range (must be >= 1)"),
    ("train.learning_rate=0", "train.learning_rate: 0.0 is out of range (must be > 0.0)"),
    ("augment.polarity_p=1.5", "augment.polarity_p: 1.5 is out of range (must be <= 1.0)"),
    ("train.mixed_precision=maybe", "train.mixed_precision: expected true or false, got 'maybe'"),
    ("model.step_weighting=linaer", "did you mean 'linear'?"),
    ("train.strategy=mirrorred", "did you mean 'mirrored'?"),
    ("epochs", "expected key=value"),
])
def test_override_mistakes_give_one_clear_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    text = str(err.value)
    assert message in text and "\n" not in text


def test_cross_field_checks_name_the_settings():
    with pytest.raises(ConfigError, match="augment.gain_min_db=1.0 is greater than augment.gain_max_db=0.0"):
        from_dict({"augment": {"gain_min_db": 1.0}})
    with pytest.raises(ConfigError, match="batch_size must be at least 2"):
        from_dict({"train": {"batch_size": 1}})
    from cpc_tf.models.registry import check_fits  # shape rules live where the encoders register

    with pytest.raises(ConfigError, match="fewer samples than T\\+k=30 windows"):
        check_fits(from_dict({"data": {"clip_seconds": 0.001}}))


def test_yaml_errors_carry_the_line_number(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder: conv1d\n  z_dim: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+, column \d+: invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  conv1d:\n    fliters: 3\n")
    with pytest.raises(ConfigError, match="'model.conv1d.fliters'; did you mean 'model.conv1d.filters'"):
        load_config(nested)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(top)


def test_every_preset_loads_and_round_trips(tmp_path):
    presets = sorted((REPO / "configs").glob("*.yaml"))
    assert len(presets) >= 4
    for preset in presets:
        if preset.name.startswith("sweep_"):
            continue
        cfg = load_config(preset)
        dumped = tmp_path / preset.name
        dumped.write_text(dump_config(cfg))
        assert load_config(dumped) == cfg, preset.name


def test_keys_and_helpers():
    keys = all_keys()
    assert "model.transformer.dff" in keys and "eval.probe_epochs" in keys
    cfg = replace_keys(Config(), {"train.epochs": 7})
    assert get_key(cfg, "train.epochs") == 7
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert yaml.safe_load(dump_config(cfg))["train"]["epochs"] == 7
