"""Config parsing, overrides and one-line validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cpc_tf.config import (
    Config,
    all_keys,
    dump_config,
    from_dict,
    load_config,
    parse_override,
    replace_keys,
)
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
    cfg = load_config(
        None,
        [
            "train.learning_rate=3e-4",
            "train.epochs=3",
            "model.conv1d.strides=[4,4,2,2,2]",
            "train.mixed_precision=true",
            "data.labels=regex:^(\\d)_",
        ],
    )
    assert cfg.train.learning_rate == pytest.approx(3e-4) and isinstance(
        cfg.train.learning_rate, float
    )
    assert cfg.train.epochs == 3
    assert cfg.model.conv1d.strides == [4, 4, 2, 2, 2]
    assert cfg.train.mixed_precision is True
    assert cfg.data.labels == "regex:^(\\d)_"


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "model.encodr=conv1d",
            "unknown config key 'model.encodr' (did you mean 'model.encoder'?)",
        ),
        ("train.epochs=abc", "train.epochs: expected an integer, got 'abc'"),
        ("train.epochs=0", "train.epochs: 0 is out of range (must be >= 1)"),
        ("train.learning_rate=0", "train.learning_rate: 0.0 is out of range (must be > 0.0)"),
        ("augment.polarity_p=1.5", "augment.polarity_p: 1.5 is out of range (must be <= 1.0)"),
        (
            "train.mixed_precision=maybe",
            "train.mixed_precision: expected true or false, got 'maybe'",
        ),
        ("model.step_weighting=linaer", "did you mean 'linear'?"),
        ("train.strategy=mirrorred", "did you mean 'mirrored'?"),
        ("epochs", "expected key=value"),
    ],
)
def test_override_mistakes_give_one_clear_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    text = str(err.value)
    assert message in text and "\n" not in text


def test_cross_field_checks_name_the_settings():
    with pytest.raises(
        ConfigError, match="augment.gain_min_db=1.0 is greater than augment.gain_max_db=0.0"
    ):
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
    with pytest.raises(
        ConfigError, match=r"'model.conv1d.fliters' \(did you mean 'model.conv1d.filters'"
    ):
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
    assert cfg.train.epochs == 7 and cfg.train.batch_size == Config().train.batch_size
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert yaml.safe_load(dump_config(cfg))["train"]["epochs"] == 7


def test_presets_ship_inside_the_package_byte_for_byte():
    from cpc_tf.config import preset_dir, resolve_config_path

    shipped = {p.name: p.read_bytes() for p in preset_dir().glob("*.yaml")}
    readable = {p.name: p.read_bytes() for p in (REPO / "configs").glob("*.yaml")}
    assert readable and shipped.keys() == readable.keys()
    for name, text in readable.items():
        assert shipped[name] == text, f"configs/{name} differs from cpc_tf/presets/{name}"
    path = resolve_config_path("cpc_conv1d_gru")
    assert Path(path).parent == preset_dir() and Path(path).parent.parent.name == "cpc_tf"
    with pytest.raises(
        ConfigError, match=r"config file not found: nope \(presets: .*cpc_conv1d_gru"
    ):
        resolve_config_path("nope")


def _laughs(levels: int = 9) -> str:
    """A "billion laughs" config: 9 aliases of 9 aliases ... expand to 9**levels strings."""
    names = [chr(ord("a") + i) for i in range(levels)]
    parts = [f"&{names[0]} [" + ",".join(["lol"] * 9) + "]"]
    parts += [f"&{cur} [" + ",".join([f"*{prev}"] * 9) + "]" for prev, cur in zip(names, names[1:])]
    return "name: [" + ", ".join(parts) + "]\n"


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    import time

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_laughs())
    assert len(bomb.read_bytes()) < 400
    started = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config(bomb)
    assert time.perf_counter() - started < 1.0
    text = str(err.value)
    assert "more than 100,000 YAML values once its aliases are expanded" in text and len(text) < 200
    with pytest.raises(ConfigError, match="more than 100,000"):
        load_config(None, ["name=" + _laughs().split(": ", 1)[1].strip()])
    small = tmp_path / "anchors.yaml"  # ordinary anchors still work
    small.write_text(
        "train: &t {epochs: 3}\neval: {seed: 4}\nmodel: {conv1d: {strides: &s [4, 4, 2, 2, 2], "
        "kernels: *s}}\n"
    )
    cfg = load_config(small)
    assert cfg.train.epochs == 3 and cfg.model.conv1d.kernels == [4, 4, 2, 2, 2]


def test_self_referencing_and_deeply_nested_yaml_are_one_line(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.write_text("name: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="alias refers to the node that contains it"):
        load_config(loop)
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply") as err:
        load_config(deep)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "override",
    [
        "name=[" + ", ".join(["12345678"] * 50_000) + "]",  # a long list where a string goes
        "model.step_weighting=" + "x" * 100_000,  # a long string among choices
        "train.learning_rate=" + "9" * 4000,  # an integer beyond float range
        "train.epochs=" + "9" * 10_000,  # an integer Python refuses to parse
        "data.labels={" + ", ".join(f"k{i}: [{i}, {i}]" for i in range(20_000)) + "}",
        "x" * 100_000 + "=1",  # a long unknown key
    ],
)
def test_echoed_values_are_cut_to_about_200_characters(override):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    text = str(err.value)
    assert len(text) < 400 and "\n" not in text, text[:500]
    assert "..." in text or "an integer of 13288 bits" in text or "Exceeds the limit" in text, text


def test_encoder_families_are_asked_of_the_registry():
    with pytest.raises(
        ConfigError, match="model.encoder='samplecnn' is a simclr encoder; set model.family=simclr"
    ):
        from_dict({"model": {"encoder": "samplecnn"}})
    with pytest.raises(
        ConfigError,
        match="'conv2d' is not registered \\(did you mean 'conv1d'\\?\\); known: conv1d",
    ):
        load_config(None, ["model.encoder=conv2d"])
    with pytest.raises(ConfigError, match="model.autoregressor: 'lstm' is not registered"):
        load_config(None, ["model.autoregressor=lstm"])
    simclr = {"family": "simclr", "encoder": "melconv"}
    assert from_dict({"model": simclr, "data": {"sample_rate": 16000}}).model.encoder == "melconv"
