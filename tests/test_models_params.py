"""Exact parameter counts of the model building blocks (SPEC §2; seeds 004, 000, 003).

Only building is needed for a count (no data runs through the big layers), so these
tests build the full-size components from the config defaults.
"""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from cpc_tf.config import Config, from_dict  # noqa: E402
from cpc_tf.models import registry  # noqa: E402
from cpc_tf.models.encoders import frame_encoder_length  # noqa: E402

SIMCLR_DATA = {"crop_samples": 59049, "sample_rate": 22050}


def _simclr(encoder: str, **model: object) -> Config:
    return from_dict(
        {"model": {"family": "simclr", "encoder": encoder, **model}, "data": SIMCLR_DATA}
    )


def test_conv1d_encoder_count_seed004_table1() -> None:
    cfg = Config()
    assert cfg.window_samples == 588
    enc = registry.build_encoder(cfg)
    assert enc.name == "encoder"
    assert enc.output_shape == (None, 256)
    trainable, total = registry.count_params(enc)
    assert total == 5_654_784
    assert total - trainable == 5 * 2 * 512  # BN moving mean/variance of the 5 conv layers
    assert enc.count_params() == total


def test_mel2d_encoder_count_seed004_table2() -> None:
    cfg = from_dict({"model": {"encoder": "mel2d"}, "data": {"sample_rate": 22050}})
    enc = registry.build_encoder(cfg)
    assert enc.input_shape == (None, 64, 64)
    assert enc.output_shape == (None, 256)
    assert registry.count_params(enc) == (5_672_832, 5_672_832)


def test_gru_autoregressor_count() -> None:
    ar = registry.build_autoregressor(Config())
    assert ar.name == "autoregressor"
    assert ar.output_shape == (None, None, 512)  # every context c_t; c_T is the last
    assert registry.count_params(ar) == (1_182_720, 1_182_720)


def test_transformer_autoregressor_count_seed004_table3() -> None:
    cfg = from_dict({"model": {"autoregressor": "transformer"}})
    assert cfg.model.context_steps == 27
    ar = registry.build_autoregressor(cfg)
    assert ar.input_shape == (None, 27, 256)
    assert ar.output_shape == (None, 512)  # folds the 27 windows into one context
    assert registry.count_params(ar) == (1_374_508, 1_374_508)


def test_predictors_count() -> None:
    cfg = Config()
    pred = registry.build_predictors(cfg)
    pred.build((None, cfg.model.c_dim))
    assert registry.count_params(pred) == (3 * 512 * 256, 3 * 512 * 256)
    assert pred.compute_output_shape((None, 512)) == (None, 3, 256)


def test_samplecnn_trainable_count_seed000() -> None:
    enc = registry.build_encoder(_simclr("samplecnn"))
    assert enc.input_shape == (None, 59049)
    assert enc.output_shape == (None, 512)  # h in R^512 (seed 000 §3.3)
    trainable, total = registry.count_params(enc)
    assert trainable == 2_368_512
    # BN moving statistics of 11 conv layers (stem, 9 blocks, output).
    assert total - trainable == 2 * (128 + 128 + 128 + 6 * 256 + 512 + 512)


def test_samplecnn_uses_he_initialisation() -> None:
    enc = registry.build_encoder(_simclr("samplecnn"))
    convs = [layer for layer in enc._flatten_layers() if isinstance(layer, keras.layers.Conv1D)]
    assert len(convs) == 11
    assert all(isinstance(c.kernel_initializer, keras.initializers.HeUniform) for c in convs)


def test_simclr_projector_count() -> None:
    cfg = _simclr("samplecnn")
    head = registry.build_projector(cfg)
    head.build((None, 512))
    assert registry.count_params(head) == (512 * 512 + 512 * 128, 512 * 512 + 512 * 128)
    assert head.compute_output_shape((None, 512)) == (None, 128)


# (n_con, n_exp, n_tail, filters, plus) -> paper count (seed 003 Table 1) and the exact
# count of this implementation (trainable, as PyTorch counts).
TUNE_PRESETS = {
    "vanilla": ((4, 4, 4, 34, False), 2.4e6, 2_340_396),
    "tail+5": ((4, 4, 9, 11, False), 2.1e6, 2_096_970),
    "tune+": ((4, 4, 9, 11, True), 2.2e6, 2_220_390),
}


@pytest.mark.parametrize("preset", sorted(TUNE_PRESETS))
def test_tune_presets_within_5_percent_seed003_table1(preset: str) -> None:
    (n_con, n_exp, n_tail, filters, plus), paper, exact = TUNE_PRESETS[preset]
    cfg = _simclr(
        "tune",
        tune={
            "n_con": n_con,
            "n_exp": n_exp,
            "n_tail": n_tail,
            "filters": filters,
            "plus": plus,
            "rep_dim": 512,
        },
    )
    enc = registry.build_encoder(cfg)
    assert enc.output_shape == (None, 512)
    trainable, _ = registry.count_params(enc)
    assert abs(trainable - paper) / paper < 0.05
    assert trainable == exact


def test_simclr_encoders_give_h_of_512() -> None:
    for cfg in (_simclr("samplecnn"), _simclr("tune")):
        assert registry.encoder_output_shape(cfg) == (512,)


def test_frame_encoder_output_and_count_seed000_sec35() -> None:
    cfg = from_dict(
        {"model": {"encoder": "frame", "c_dim": 256, "predict_steps": 20}, "data": SIMCLR_DATA}
    )
    f = cfg.model.frame
    frames = frame_encoder_length(59049, f.strides, f.kernels, f.paddings)
    assert frames == 124  # total hop 5*3*2^5 = 480
    enc = registry.build_encoder(cfg)
    assert enc.output_shape == (None, frames, 512)
    assert registry.encoder_output_shape(cfg) == (frames, 512)
    # 7 convs, 512 filters, ReLU only (CLMR's code): no BN statistics.
    expected = (
        (10 * 512 + 512)
        + (6 * 512 * 512 + 512)
        + 3 * (4 * 512 * 512 + 512)
        + 2 * (2 * 512 * 512 + 512)
    )
    assert registry.count_params(enc) == (expected, expected)
    ar = registry.build_autoregressor(cfg)  # GRU 256 returning the whole context sequence
    assert ar.output_shape == (None, None, 256)
    assert registry.count_params(ar)[0] == 3 * (512 * 256 + 256 * 256 + 2 * 256)
    pred = registry.build_predictors(cfg)
    assert pred.compute_output_shape((None, frames, 256)) == (None, frames, 20, 512)


def test_a_model_too_large_for_memory_is_one_config_error_naming_the_sizes() -> None:
    from cpc_tf.errors import ConfigError
    from cpc_tf.models.factory import build_model

    # The GRU's kernel of 256 x (3 x 10^9) floats is refused by the allocator at once.
    cfg = from_dict({"model": {"c_dim": 10**9}})
    with pytest.raises(ConfigError) as err:
        build_model(cfg)
    text = str(err.value)
    assert text.startswith("the model of this config does not fit in memory") and "\n" not in text
    assert "model.c_dim=1000000000 (default 512)" in text
