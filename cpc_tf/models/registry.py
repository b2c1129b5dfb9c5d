"""The registered encoder and autoregressor builders, and the public build helpers.

Adding an encoder is one class plus one decorated builder::

    @register_encoder(
        "my_encoder", families=("simclr",), input_shape=lambda cfg: (cfg.crop_samples,)
    )
    def _my_encoder(cfg: Config) -> keras.layers.Layer:
        return MyEncoder(units=cfg.model.z_dim, name="my_encoder")

``families`` says which model families (``cpc``, ``simclr``) may use it; that is the
only place the rule lives (config validation asks :func:`check_names`). Builders read
every setting from the config; the defaults live in ``cpc_tf/config/schema.py``.
``build_encoder`` / ``build_autoregressor`` wrap the layer into a functional
``keras.Model`` named "encoder" / "autoregressor", built for the shape it will see.

This module is the one to import: it declares (and so registers) the builders. The
tables and decorators live in :mod:`cpc_tf.models.registration`, the shape helpers in
:mod:`cpc_tf.models.shapes`, the fit checks (``check=``) in :mod:`cpc_tf.models.fit_checks`;
their public names are importable from here too.
"""

from __future__ import annotations

from typing import Any

import keras

from cpc_tf.config import Config
from cpc_tf.models.autoregressive import GRUAutoregressor, TransformerAutoregressor
from cpc_tf.models.encoders import Conv1DEncoder, FrameEncoder, Mel2DEncoder, SampleCNN
from cpc_tf.models.fit_checks import (
    _check_conv1d,
    _check_frame,
    _check_mel2d,
    _check_melconv,
    _check_samplecnn,
    _check_transformer,
    _check_tune,
    check_fits,
    check_queue_fits,
    cpc_prediction,
    cpc_representation,
)
from cpc_tf.models.heads import Predictors, ProjectionHead
from cpc_tf.models.melconv import MelConvEncoder
from cpc_tf.models.registration import _ENCODER_FAMILIES as _ENCODER_FAMILIES
from cpc_tf.models.registration import _ENCODER_INPUT_SHAPES as _ENCODER_INPUT_SHAPES
from cpc_tf.models.registration import (
    AUTOREGRESSORS,
    ENCODERS,
    Builder,
    CheckFn,
    ShapeFn,
    check_autoregressor,
    check_encoder,
    check_names,
    register_autoregressor,
    register_encoder,
)
from cpc_tf.models.shapes import (
    code_hop_samples,
    contrastive_chance,
    encoder_input_shape,
    encoder_output_dim,
    encoder_output_shape,
    is_sequence_encoder,
    melconv_frames,
    model_input_shape,
)
from cpc_tf.models.tunet import TUNe

__all__ = [
    "contrastive_chance",
    "AUTOREGRESSORS",
    "ENCODERS",
    "Builder",
    "CheckFn",
    "ShapeFn",
    "build_autoregressor",
    "build_encoder",
    "build_predictors",
    "build_projector",
    "check_autoregressor",
    "check_encoder",
    "check_fits",
    "check_names",
    "check_queue_fits",
    "code_hop_samples",
    "count_params",
    "cpc_prediction",
    "cpc_representation",
    "encoder_input_shape",
    "encoder_output_dim",
    "encoder_output_shape",
    "is_sequence_encoder",
    "melconv_frames",
    "model_input_shape",
    "register_autoregressor",
    "register_encoder",
]


# ====================================================================== encoders
@register_encoder(
    "conv1d", families=("cpc",), input_shape=lambda cfg: (cfg.window_samples,), check=_check_conv1d
)
def _build_conv1d(cfg: Config) -> keras.layers.Layer:
    c = cfg.model.conv1d
    return Conv1DEncoder(
        z_dim=cfg.model.z_dim,
        strides=c.strides,
        kernels=c.kernels,
        filters=c.filters,
        hidden_units=c.hidden_units,
        dropout=c.dropout,
        norm=c.norm,
        synchronized_bn=cfg.model.synchronized_bn,
        bn_momentum=cfg.model.bn_momentum,
        name="conv1d_encoder",
    )


@register_encoder(
    "mel2d",
    families=("cpc",),
    input_shape=lambda cfg: (cfg.model.mel2d.frames, cfg.model.mel2d.n_mels),
    check=_check_mel2d,
)
def _build_mel2d(cfg: Config) -> keras.layers.Layer:
    m = cfg.model.mel2d
    return Mel2DEncoder(
        z_dim=cfg.model.z_dim,
        filters=m.filters,
        kernel=m.kernel,
        stride=m.stride,
        hidden_units=m.hidden_units,
        dropout=m.dropout,
        name="mel2d_encoder",
    )


@register_encoder("frame", families=("cpc",), check=_check_frame)
def _build_frame(cfg: Config) -> keras.layers.Layer:
    f = cfg.model.frame
    return FrameEncoder(
        strides=f.strides,
        kernels=f.kernels,
        filters=f.filters,
        paddings=f.paddings,
        norm=f.norm,
        dim=f.dim,
        synchronized_bn=cfg.model.synchronized_bn,
        bn_momentum=cfg.model.bn_momentum,
        name="frame_encoder",
    )


@register_encoder("samplecnn", families=("simclr",), check=_check_samplecnn)
def _build_samplecnn(cfg: Config) -> keras.layers.Layer:
    s = cfg.model.samplecnn
    return SampleCNN(
        channels=s.channels,
        stem_filters=s.stem_filters,
        out_filters=s.out_filters,
        synchronized_bn=cfg.model.synchronized_bn,
        bn_momentum=cfg.model.bn_momentum,
        name="samplecnn",
    )


@register_encoder("tune", families=("simclr",), check=_check_tune)
def _build_tune(cfg: Config) -> keras.layers.Layer:
    t = cfg.model.tune
    return TUNe(
        n_con=t.n_con,
        n_exp=t.n_exp,
        n_tail=t.n_tail,
        filters=t.filters,
        rep_dim=t.rep_dim,
        plus=t.plus,
        synchronized_bn=cfg.model.synchronized_bn,
        bn_momentum=cfg.model.bn_momentum,
        name="tune",
    )


@register_encoder(
    "melconv",
    families=("cpc", "simclr"),
    input_shape=lambda cfg: (melconv_frames(cfg), cfg.model.melconv.n_mels),
    check=_check_melconv,
)
def _build_melconv(cfg: Config) -> keras.layers.Layer:
    m = cfg.model.melconv
    pooling = "none" if cfg.model.family == "cpc" else m.pooling
    return MelConvEncoder(
        n_mels=m.n_mels,
        filters=m.filters,
        time_pools=m.time_pools,
        freq_pool=m.freq_pool,
        dims=m.dims,
        norm=m.norm,
        input_norm=m.input_norm,
        pooling=pooling,
        dropout=m.dropout,
        synchronized_bn=cfg.model.synchronized_bn,
        bn_momentum=cfg.model.bn_momentum,
        name="melconv_encoder",
    )


# ================================================================ autoregressors
@register_autoregressor("gru")
def _build_gru(cfg: Config) -> keras.layers.Layer:
    # Every context c_t is returned; c_T is the last one (same weights either way).
    return GRUAutoregressor(
        units=cfg.model.c_dim,
        reset_after=cfg.model.gru.reset_after,
        return_sequences=True,
        name="gru_autoregressor",
    )


@register_autoregressor("transformer", check=_check_transformer)
def _build_transformer(cfg: Config) -> keras.layers.Layer:
    tr = cfg.model.transformer
    return TransformerAutoregressor(
        d_model=encoder_output_shape(cfg)[-1],
        output_dim=cfg.model.c_dim,
        max_positions=cfg.num_windows,
        num_layers=tr.layers,
        num_heads=tr.heads,
        dff=tr.dff,
        dense_units=tr.dense_units,
        dropout=tr.dropout,
        name="transformer_autoregressor",
    )


# ======================================================================= public
def build_encoder(cfg: Config) -> keras.Model:
    """The configured encoder as a built functional model named "encoder"."""
    check_encoder(cfg)
    layer = ENCODERS[cfg.model.encoder](cfg)
    name = "log_mel" if cfg.model.encoder in ("mel2d", "melconv") else "audio"
    inputs = keras.Input(shape=encoder_input_shape(cfg), name=name)
    return keras.Model(inputs, layer(inputs), name="encoder")


def build_autoregressor(cfg: Config) -> keras.Model:
    """The configured autoregressor as a built functional model named "autoregressor".

    Input ``[B, T, D]`` with D the encoder's output size and T = model.context_steps
    (any length for the GRU). Output: every context ``[B, T, c_dim]`` (GRU), or the one
    vector c_T ``[B, c_dim]`` of the seed's Transformer.
    """
    check_autoregressor(cfg)
    layer = AUTOREGRESSORS[cfg.model.autoregressor](cfg)
    out_shape = encoder_output_shape(cfg)
    dim = out_shape[-1]
    steps = cfg.model.context_steps if cfg.model.autoregressor == "transformer" else None
    inputs = keras.Input(shape=(steps, dim), name="codes")
    return keras.Model(inputs, layer(inputs), name="autoregressor")


def build_predictors(cfg: Config) -> Predictors:
    """CPC's k linear maps W_k: c_dim → the encoder's output size (unbuilt; built on first call)."""
    return Predictors(
        steps=cfg.model.predict_steps, units=encoder_output_dim(cfg), name="predictors"
    )


def build_projector(cfg: Config) -> ProjectionHead:
    """The SimCLR projection head with sizes model.projection_dims (unbuilt)."""
    return ProjectionHead(dims=cfg.model.projection_dims, name="projector")


def count_params(layer: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts; total includes non-trainable weights such as
    BatchNorm moving statistics (Keras ``count_params``). The layer must be built.
    """
    if not getattr(layer, "built", False):
        raise ValueError(
            f"{getattr(layer, 'name', layer)!r} is not built yet; build it before counting"
        )
    trainable = sum(int(_size(w.shape)) for w in layer.trainable_weights)
    total = sum(int(_size(w.shape)) for w in layer.weights)
    return trainable, total


def _size(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
