"""Shapes, serialization and config checks of the model building blocks.

Small variants keep these fast; the exact full-size counts are in test_models_params.py.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

# Keras' own .keras writer converts TF variables with np.array(x), which NumPy 2 flags.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

from cpc_tf.config import Config, from_dict  # noqa: E402
from cpc_tf.errors import ConfigError  # noqa: E402
from cpc_tf.models import registry  # noqa: E402
from cpc_tf.models.autoregressive import (  # noqa: E402
    GRUAutoregressor,
    TransformerAutoregressor,
    TransformerEncoderLayer,
)
from cpc_tf.models.encoders import (  # noqa: E402
    Conv1DEncoder,
    FrameEncoder,
    Mel2DEncoder,
    SampleCNN,
    frame_encoder_length,
    samplecnn_output_steps,
)
from cpc_tf.models.heads import Predictors, ProjectionHead  # noqa: E402
from cpc_tf.models.layers import (  # noqa: E402
    ConvBlock,
    PadToMatch,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)
from cpc_tf.models.tunet import TUNe, tune_plan  # noqa: E402

# Small configs, one per component (name -> overrides).
SMALL = {
    "conv1d": {"model": {"z_dim": 8, "conv1d": {"filters": 8, "hidden_units": 8}}},
    "mel2d": {
        "data": {"sample_rate": 22050},
        "model": {
            "encoder": "mel2d",
            "z_dim": 8,
            "mel2d": {"filters": [4, 8], "frames": 16, "n_mels": 12, "hidden_units": 8},
        },
    },
    "frame": {
        "data": {"crop_samples": 2000},
        "model": {"encoder": "frame", "c_dim": 8, "predict_steps": 2, "frame": {"filters": 8}},
    },
    "samplecnn": {
        "data": {"crop_samples": 250, "sample_rate": 22050},
        "model": {
            "family": "simclr",
            "encoder": "samplecnn",
            "samplecnn": {"channels": [8, 8, 16], "stem_filters": 8, "out_filters": 16},
        },
    },
    "tune": {
        "data": {"crop_samples": 100, "sample_rate": 22050},
        "model": {
            "family": "simclr",
            "encoder": "tune",
            "tune": {"n_con": 2, "n_exp": 2, "n_tail": 3, "filters": 4, "rep_dim": 16},
        },
    },
    "tune_plus": {
        "data": {"crop_samples": 100, "sample_rate": 22050},
        "model": {
            "family": "simclr",
            "encoder": "tune",
            "tune": {
                "n_con": 2,
                "n_exp": 1,
                "n_tail": 3,
                "filters": 4,
                "rep_dim": 16,
                "plus": True,
            },
        },
    },
    "transformer": {
        "model": {
            "autoregressor": "transformer",
            "z_dim": 8,
            "c_dim": 16,
            "context_steps": 5,
            "predict_steps": 2,
            "conv1d": {"filters": 8, "hidden_units": 8},
            "transformer": {"dff": 6, "dense_units": 6},
        }
    },
}


def _cfg(name: str) -> Config:
    return from_dict(SMALL[name])


def _batch(shape: tuple[Any, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _np(x: Any) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _roundtrip(model: keras.Model, x: np.ndarray, tmp_path: Any) -> None:
    """Save to .keras, load back, compare inference outputs and weights."""
    y = _np(model(x, training=False))
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_np(loaded(x, training=False)), y)
    assert registry.count_params(loaded) == registry.count_params(model)


# ------------------------------------------------------------------ shapes + saving
@pytest.mark.parametrize("name", ["conv1d", "mel2d", "frame", "samplecnn", "tune", "tune_plus"])
def test_encoder_shapes_and_save_load(name: str, tmp_path: Any) -> None:
    cfg = _cfg(name)
    registry.check_fits(cfg)
    enc = registry.build_encoder(cfg)
    in_shape = registry.encoder_input_shape(cfg)
    assert enc.input_shape == (None,) + in_shape
    x = _batch((2,) + in_shape)
    y = enc(x, training=False)
    expected = {
        "conv1d": (2, 8),
        "mel2d": (2, 8),
        "frame": (
            2,
            frame_encoder_length(
                2000, cfg.model.frame.strides, cfg.model.frame.kernels, cfg.model.frame.paddings
            ),
            8,
        ),
        "samplecnn": (2, samplecnn_output_steps(250, 3) * 16),
        "tune": (2, 16),
        "tune_plus": (2, 16),
    }[name]
    assert tuple(y.shape) == expected
    assert tuple(y.shape[1:]) == registry.encoder_output_shape(cfg)
    _roundtrip(enc, x, tmp_path)


def test_encoder_input_shapes() -> None:
    assert registry.encoder_input_shape(Config()) == (588,)
    assert registry.encoder_input_shape(_cfg("mel2d")) == (16, 12)
    assert registry.encoder_input_shape(_cfg("frame")) == (2000,)
    assert registry.encoder_input_shape(_cfg("samplecnn")) == (250,)
    assert registry.encoder_input_shape(_cfg("tune")) == (100,)


@pytest.mark.parametrize("name", ["conv1d", "transformer", "frame"])
def test_autoregressor_shapes_and_save_load(name: str, tmp_path: Any) -> None:
    cfg = _cfg(name)
    ar = registry.build_autoregressor(cfg)
    dim = registry.encoder_output_dim(cfg)
    steps = cfg.model.context_steps if name != "frame" else 9
    x = _batch((3, steps, dim), seed=1)
    y = ar(x, training=False)
    if name == "transformer":  # the seed's Transformer folds the windows into one vector
        assert tuple(y.shape) == (3, cfg.model.c_dim)
    else:  # the GRU returns every context c_t (c_T is the last)
        assert tuple(y.shape) == (3, steps, cfg.model.c_dim)
    _roundtrip(ar, x, tmp_path)


def test_transformer_autoregressor_is_deterministic_in_inference_and_random_in_training() -> None:
    cfg = _cfg("transformer")
    ar = registry.build_autoregressor(cfg)
    x = _batch((4, cfg.model.context_steps, 8))
    np.testing.assert_array_equal(_np(ar(x, training=False)), _np(ar(x, training=False)))
    assert not np.array_equal(_np(ar(x, training=True)), _np(ar(x, training=False)))


def test_heads_shapes() -> None:
    pred = Predictors(steps=3, units=5)
    assert tuple(pred(_batch((2, 7))).shape) == (2, 3, 5)
    assert tuple(pred(_batch((2, 4, 7))).shape) == (2, 4, 3, 5)
    # step k uses its own matrix
    w = [layer.kernel for layer in pred.projections]
    assert len({id(v) for v in w}) == 3
    head = ProjectionHead(dims=[6, 4])
    assert tuple(head(_batch((2, 9))).shape) == (2, 4)
    assert all(not d.use_bias for d in head.chain if isinstance(d, keras.layers.Dense))


def test_predictors_and_projector_from_config() -> None:
    cfg = Config()
    pred = registry.build_predictors(cfg)
    assert (pred.steps, pred.units) == (cfg.model.predict_steps, cfg.model.z_dim)
    proj = registry.build_projector(from_dict(SMALL["samplecnn"]))
    assert proj.dims == [512, 128]


# ------------------------------------------------------------------ get_config
def _config_roundtrip(layer: keras.layers.Layer) -> None:
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    registered = keras.saving.get_registered_name(type(layer))
    assert registered == f"cpc_tf>{type(layer).__name__}"


@pytest.mark.parametrize(
    "layer",
    [
        lambda: ConvBlock(
            8,
            3,
            strides=2,
            padding="valid",
            explicit_padding=1,
            batch_norm=False,
            activation="leaky_relu",
            kernel_initializer="he_uniform",
        ),
        lambda: SinusoidalPositionalEncoding(12),
        lambda: PadToMatch(),
        lambda: Conv1DEncoder(
            z_dim=16,
            strides=[3, 2],
            kernels=[5, 3],
            filters=4,
            hidden_units=6,
            dropout=0.2,
            synchronized_bn=True,
        ),
        lambda: Mel2DEncoder(
            z_dim=16, filters=[2, 3], kernel=5, stride=3, hidden_units=7, dropout=0.3
        ),
        lambda: FrameEncoder(
            strides=[2, 2], kernels=[4, 2], filters=5, paddings=[1, 0], batch_norm=True
        ),
        lambda: SampleCNN(channels=[4, 8], stem_filters=3, out_filters=9, synchronized_bn=True),
        lambda: TUNe(
            n_con=3, n_exp=2, n_tail=5, filters=5, rep_dim=40, plus=True, synchronized_bn=True
        ),
        lambda: GRUAutoregressor(units=7, reset_after=False, return_sequences=True),
        lambda: TransformerEncoderLayer(d_model=12, num_heads=3, dff=9, dropout=0.2),
        lambda: TransformerAutoregressor(
            d_model=12,
            output_dim=5,
            max_positions=9,
            num_layers=1,
            num_heads=3,
            dff=4,
            dense_units=6,
            dropout=0.0,
        ),
        lambda: Predictors(steps=4, units=3, use_bias=True),
        lambda: ProjectionHead(dims=[7, 5, 3]),
    ],
)
def test_get_config_roundtrip(layer: Any) -> None:
    _config_roundtrip(layer())


def test_builders_read_the_config() -> None:
    cfg = from_dict(
        {
            "model": {
                "synchronized_bn": False,
                "conv1d": {"filters": 4, "hidden_units": 5, "dropout": 0.25},
            }
        }
    )
    enc = registry.build_encoder(cfg)
    layer = enc.get_layer("conv1d_encoder")
    assert (layer.filters, layer.hidden_units, layer.dropout) == (4, 5, 0.25)
    bns = [lyr for lyr in enc._flatten_layers() if isinstance(lyr, keras.layers.BatchNormalization)]
    assert len(bns) == 5 and not any(bn.synchronized for bn in bns)
    cfg = from_dict(
        {
            "model": {"synchronized_bn": True},
            "data": {"crop_samples": 100, "sample_rate": 22050},
            **{k: v for k, v in SMALL["tune"].items() if k != "data"},
        }
    )
    bns = [
        lyr
        for lyr in registry.build_encoder(cfg)._flatten_layers()
        if isinstance(lyr, keras.layers.BatchNormalization)
    ]
    assert bns and all(bn.synchronized for bn in bns)


def test_layers_follow_a_mixed_precision_policy() -> None:
    enc = Conv1DEncoder(z_dim=4, filters=4, hidden_units=4, dtype="mixed_float16")
    y = enc(_batch((2, 588)))
    assert y.dtype == "float16"
    assert enc.blocks[0].bn.dtype_policy.name == "mixed_float16"
    assert enc.blocks[0].conv.kernel.dtype == "float32"  # variables stay float32
    tune = TUNe(2, 2, 3, 4, 16, plus=True, dtype="mixed_bfloat16")
    assert tune(_batch((2, 100))).dtype == "bfloat16"
    ar = TransformerAutoregressor(
        d_model=8,
        output_dim=4,
        max_positions=6,
        num_heads=2,
        dff=4,
        dense_units=4,
        dtype="mixed_float16",
    )
    assert ar(_batch((2, 5, 8))).dtype == "float16"


# ------------------------------------------------------------------ TUNe structure
def test_tune_without_expansive_path_is_a_samplecnn_like_chain() -> None:
    tune = TUNe(n_con=3, n_exp=0, n_tail=3, filters=4, rep_dim=64)
    ops_ = tune.describe()
    assert not any(op.startswith("up") or op == "concat" for op in ops_)
    assert ops_[-1] == "gap"
    chain = ops_[:-1]
    assert chain[0::2] == [f"block {w}" for w in (4, 8, 16, 32, 64, 64, 64)][: len(chain[0::2])]
    assert all(op == "pool" for op in chain[1::2])
    tune.build((None, 3**6))
    kinds = {type(lyr) for lyr in tune._flatten_layers(include_self=False)}
    assert keras.layers.Conv1DTranspose not in kinds and keras.layers.Concatenate not in kinds
    assert tune(_batch((2, 3**6))).shape == (2, 64)


def test_tune_plus_concatenates_expansive_outputs_3_to_2() -> None:
    plan = tune_plan(4, 4, 9, 11, 512, plus=True)
    assert plan.down == [11, 22, 44, 88] and plan.bottleneck == 176
    assert plan.up == [88, 44, 22, 11]
    assert plan.tail == [22, 44, 88, 176, 352, 352, 352, 352, 512]
    assert plan.tail_extra == [22, 44, 88, 176, 0, 0, 0, 0, 0]
    tune = TUNe(4, 4, 9, 11, 512, plus=True)
    tune.build((None, 59049))
    for t in range(4):  # input channels = previous tail width + expansive output = 3:2 of output
        kernel = tune.tail_blocks[t].conv.kernel
        assert kernel.shape[1] * 2 == kernel.shape[2] * 3
    vanilla = tune_plan(4, 4, 4, 34, 512, plus=False)
    assert vanilla.tail == [68, 136, 272, 512] and vanilla.tail_extra == [0, 0, 0, 0]


def test_tune_handles_lengths_that_are_not_powers_of_three() -> None:
    tune = TUNe(2, 2, 2, 3, 8, plus=True)
    for n in (27, 28, 29, 50):
        assert tune(_batch((1, n))).shape == (1, 8)


# ------------------------------------------------------------------ small layers
def test_sinusoidal_table_matches_the_tutorial_formula() -> None:
    table = sinusoidal_table(5, 6)
    p = np.arange(5)
    np.testing.assert_allclose(table[:, 0], np.sin(p), atol=1e-6)
    np.testing.assert_allclose(table[:, 1], np.cos(p), atol=1e-6)
    np.testing.assert_allclose(table[:, 2], np.sin(p / 10000 ** (2 / 6)), atol=1e-6)
    layer = SinusoidalPositionalEncoding(5)
    np.testing.assert_allclose(_np(layer(np.zeros((1, 3, 6), "float32")))[0], table[:3], atol=1e-6)


def test_count_params_needs_a_built_layer() -> None:
    with pytest.raises(ValueError, match="not built"):
        registry.count_params(ConvBlock(4, 3))


def test_register_encoder_adds_one_name() -> None:
    name = "test_only_encoder"

    @registry.register_encoder(name, families=("cpc",), input_shape=lambda cfg: (10,))
    def _build(cfg: Config) -> keras.layers.Layer:
        return keras.layers.Dense(cfg.model.z_dim, name="dense_encoder")

    try:
        assert registry.ENCODERS[name] is _build
        cfg = Config()
        cfg.model.encoder = name  # bypasses config validation on purpose
        enc = registry.build_encoder(cfg)
        assert enc.output_shape == (None, cfg.model.z_dim) and enc.name == "encoder"
    finally:
        registry.ENCODERS.pop(name, None)
        registry._ENCODER_INPUT_SHAPES.pop(name, None)
        registry._ENCODER_FAMILIES.pop(name, None)


@pytest.mark.parametrize(
    "family, encoder, message",
    [
        (
            "simclr",
            "conv1d",
            "model.encoder='conv1d' is a cpc encoder; set model.family=cpc or choose one of "
            "melconv, samplecnn, tune",
        ),
        (
            "cpc",
            "samplecnn",
            "model.encoder='samplecnn' is a simclr encoder; set model.family=simclr",
        ),
    ],
)
def test_the_family_declared_where_an_encoder_registers_is_checked_by_validation(
    family: str, encoder: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict({"model": {"family": family, "encoder": encoder}, "data": {"sample_rate": 22050}})


# ------------------------------------------------------------------ check_fits
@pytest.mark.parametrize(
    "overrides, setting, builder",
    [
        ({"data": {"clip_seconds": 0.5}}, "model.conv1d.kernels", "encoder"),
        (
            {
                "data": {"crop_samples": 3000, "sample_rate": 22050},
                "model": {"family": "simclr", "encoder": "samplecnn"},
            },
            "data.crop_samples",
            "encoder",
        ),
        (
            {
                "data": {"crop_samples": 50, "sample_rate": 22050},
                "model": {"family": "simclr", "encoder": "tune"},
            },
            "model.tune.n_tail",
            "encoder",
        ),
        (
            {
                "data": {"sample_rate": 22050},
                "model": {"family": "simclr", "encoder": "tune", "tune": {"n_tail": 0}},
            },
            "model.tune.n_tail",
            "encoder",
        ),
        (
            {"data": {"crop_samples": 4000}, "model": {"encoder": "frame", "predict_steps": 20}},
            "model.predict_steps",
            "encoder",
        ),
        (
            {"model": {"encoder": "frame", "frame": {"paddings": [1, 1]}}},
            "model.frame.paddings",
            "encoder",
        ),
        (
            {"data": {"clip_seconds": 0.1}, "model": {"encoder": "mel2d"}},
            "model.mel2d.frames",
            "encoder",
        ),
        (
            {"model": {"encoder": "frame", "autoregressor": "transformer"}},
            "model.autoregressor",
            "autoregressor",
        ),
        (
            {"model": {"autoregressor": "transformer", "transformer": {"heads": 3}}},
            "model.transformer.heads",
            "autoregressor",
        ),
    ],
)
def test_check_fits_names_the_setting(
    overrides: dict[str, Any], setting: str, builder: str
) -> None:
    cfg = from_dict(overrides)
    pattern = setting.replace(".", r"\.")
    with pytest.raises(ConfigError, match=pattern):
        registry.check_fits(cfg)
    build = registry.build_encoder if builder == "encoder" else registry.build_autoregressor
    with pytest.raises(ConfigError, match=pattern):
        build(cfg)


def test_check_fits_accepts_the_defaults() -> None:
    registry.check_fits(Config())
    registry.check_fits(from_dict({"model": {"autoregressor": "transformer"}}))
    registry.check_fits(from_dict({"model": {"encoder": "mel2d"}, "data": {"sample_rate": 22050}}))
    registry.check_fits(
        from_dict(
            {
                "model": {"family": "simclr", "encoder": "tune"},
                "data": {"crop_samples": 59049, "sample_rate": 22050},
            }
        )
    )
