"""Name → builder registries for encoders and autoregressors, and the model-size checks.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import keras

from cpc_tf.checks import did_you_mean, shown
from cpc_tf.config import Config
from cpc_tf.errors import ConfigError
from cpc_tf.models.autoregressive import GRUAutoregressor, TransformerAutoregressor
from cpc_tf.models.encoders import (
    Conv1DEncoder,
    FrameEncoder,
    Mel2DEncoder,
    SampleCNN,
    frame_encoder_length,
    samplecnn_output_steps,
)
from cpc_tf.models.heads import Predictors, ProjectionHead
from cpc_tf.models.layers import conv_output_length
from cpc_tf.models.melconv import MelConvEncoder, melconv_output_frames
from cpc_tf.models.tunet import TUNe, tune_plan

Builder = Callable[[Config], keras.layers.Layer]
ShapeFn = Callable[[Config], tuple[int, ...]]
CheckFn = Callable[[Config], None]
F = TypeVar("F", bound=Builder)

ENCODERS: dict[str, Builder] = {}
AUTOREGRESSORS: dict[str, Builder] = {}
_ENCODER_INPUT_SHAPES: dict[str, ShapeFn] = {}
_ENCODER_CHECKS: dict[str, CheckFn] = {}
_ENCODER_FAMILIES: dict[str, tuple[str, ...]] = {}
_AUTOREGRESSOR_CHECKS: dict[str, CheckFn] = {}


def _raw_crop(cfg: Config) -> tuple[int, ...]:
    return (cfg.crop_samples,)


def register_encoder(
    name: str,
    families: tuple[str, ...],
    input_shape: ShapeFn = _raw_crop,
    check: CheckFn | None = None,
) -> Callable[[F], F]:
    """Decorator: register ``builder(cfg) -> keras.layers.Layer`` as encoder ``name``.

    ``families`` are the model families that may use it (``"cpc"``, ``"simclr"``);
    ``input_shape(cfg)`` is the per-example input shape (default: a raw crop of
    ``cfg.crop_samples`` samples); ``check(cfg)`` raises ConfigError when the config
    cannot fit this encoder.
    """

    def decorate(builder: F) -> F:
        ENCODERS[name] = builder
        _ENCODER_FAMILIES[name] = tuple(families)
        _ENCODER_INPUT_SHAPES[name] = input_shape
        if check is not None:
            _ENCODER_CHECKS[name] = check
        return builder

    return decorate


def register_autoregressor(name: str, check: CheckFn | None = None) -> Callable[[F], F]:
    """Decorator: register ``builder(cfg) -> keras.layers.Layer`` as autoregressor ``name``."""

    def decorate(builder: F) -> F:
        AUTOREGRESSORS[name] = builder
        if check is not None:
            _AUTOREGRESSOR_CHECKS[name] = check
        return builder

    return decorate


# =============================================================== checks (ConfigError)
def _crop_text(cfg: Config) -> str:
    d = cfg.data
    if d.crop_samples:
        return f"data.crop_samples={d.crop_samples}"
    return (
        f"data.clip_seconds={d.clip_seconds:g} at data.sample_rate={d.sample_rate} "
        f"({cfg.crop_samples} samples)"
    )


def _window_text(cfg: Config) -> str:
    return (
        f"a window of {cfg.window_samples} samples ({_crop_text(cfg)} split into "
        f"model.context_steps + model.predict_steps = {cfg.num_windows} windows)"
    )


def _min_valid_input(
    kernels: list[int], strides: list[int], paddings: list[int] | None = None
) -> int:
    """Smallest input length for which a chain of valid convolutions leaves one step."""
    paddings = paddings or [0] * len(kernels)
    need = 1
    for k, s, p in reversed(list(zip(kernels, strides, paddings))):
        need = max((need - 1) * s + k - 2 * p, 1)
    return need


def _check_windows(cfg: Config) -> None:
    """A window encoder needs at least one sample per window."""
    if cfg.window_samples < 1:
        raise ConfigError(
            f"{_crop_text(cfg)} is fewer samples than T+k={cfg.num_windows} windows "
            "(model.context_steps + model.predict_steps)"
        )


def _check_conv1d(cfg: Config) -> None:
    _check_windows(cfg)
    c = cfg.model.conv1d
    steps = cfg.window_samples
    for s, k in zip(c.strides, c.kernels):
        steps = conv_output_length(steps, k, s, "valid")
    if steps < 1:
        need = _min_valid_input(c.kernels, c.strides)
        raise ConfigError(
            f"model.conv1d.kernels={c.kernels} with model.conv1d.strides={c.strides} "
            f"need windows of at least {need} samples, but {_window_text(cfg)} is too "
            "short; lengthen the clip, raise the sample rate or use smaller kernels/strides"
        )


def _check_mel2d(cfg: Config) -> None:
    _check_windows(cfg)
    m = cfg.model.mel2d
    if cfg.window_samples < m.frames:
        raise ConfigError(
            f"model.mel2d.frames={m.frames} frames cannot be cut from {_window_text(cfg)}: "
            "the hop would be under one sample"
        )


def _check_frame(cfg: Config) -> None:
    f = cfg.model.frame
    if len(f.paddings) != len(f.strides):
        raise ConfigError(
            f"model.frame.paddings has {len(f.paddings)} entries but model.frame.strides "
            f"has {len(f.strides)}"
        )
    frames = frame_encoder_length(cfg.crop_samples, f.strides, f.kernels, f.paddings)
    need = cfg.model.predict_steps + 1
    if frames < need:
        raise ConfigError(
            f"the frame encoder (model.frame.kernels={f.kernels}, model.frame.strides="
            f"{f.strides}) turns {_crop_text(cfg)} into {frames} frames, fewer than "
            f"model.predict_steps + 1 = {need}"
        )


def _check_samplecnn(cfg: Config) -> None:
    blocks = len(cfg.model.samplecnn.channels)
    if samplecnn_output_steps(cfg.crop_samples, blocks) < 1:
        raise ConfigError(
            f"{_crop_text(cfg)} is too short for SampleCNN with {blocks} blocks "
            f"(len(model.samplecnn.channels)): it needs at least 3^{blocks + 1} = "
            f"{3 ** (blocks + 1)} samples"
        )


def _check_tune(cfg: Config) -> None:
    t = cfg.model.tune
    if t.n_tail < 1:
        raise ConfigError(
            "model.tune.n_tail must be at least 1: the tail's last block is what "
            f"reaches model.tune.rep_dim={t.rep_dim}"
        )
    need = tune_plan(t.n_con, t.n_exp, t.n_tail, t.filters, t.rep_dim, t.plus).min_samples
    if cfg.crop_samples < need:
        raise ConfigError(
            f"{_crop_text(cfg)} is too short for TUNe with model.tune.n_con={t.n_con}, "
            f"model.tune.n_exp={t.n_exp}, model.tune.n_tail={t.n_tail}: it pools by 3 "
            f"that often and needs at least {need} samples"
        )


def _check_transformer(cfg: Config) -> None:
    tr = cfg.model.transformer
    shape = encoder_output_shape(cfg)
    if len(shape) != 1:
        raise ConfigError(
            f"model.autoregressor=transformer folds a fixed number of windows "
            f"(model.context_steps) and cannot run over the frame sequence of "
            f"model.encoder={cfg.model.encoder!r}; use model.autoregressor=gru"
        )
    if shape[0] % tr.heads:
        raise ConfigError(
            f"the encoder output size {shape[0]} (model.z_dim) is not divisible by "
            f"model.transformer.heads={tr.heads}"
        )


def _check_known(key: str, name: str, registry: dict[str, Any]) -> None:
    if name not in registry:
        raise ConfigError(
            f"{key}: {shown(name)} is not registered{did_you_mean(name, registry)}; "
            f"known: {', '.join(sorted(registry))}"
        )


def check_names(cfg: Config) -> None:
    """Raise ConfigError unless the encoder is registered for ``model.family`` and, for
    CPC, the autoregressor is registered. Config validation asks this (the families
    are declared here, by ``register_encoder``).
    """
    name, family = cfg.model.encoder, cfg.model.family
    _check_known("model.encoder", name, ENCODERS)
    if family not in _ENCODER_FAMILIES[name]:
        fitting = sorted(n for n, fams in _ENCODER_FAMILIES.items() if family in fams)
        other = " or ".join(sorted(set(_ENCODER_FAMILIES[name])))
        raise ConfigError(
            f"model.encoder={name!r} is a {other} encoder; set model.family={other} or "
            f"choose one of {', '.join(fitting)}"
        )
    if family == "cpc":
        _check_known("model.autoregressor", cfg.model.autoregressor, AUTOREGRESSORS)


def check_encoder(cfg: Config) -> None:
    """Raise ConfigError (naming the settings) when ``cfg`` cannot build its encoder."""
    check_names(cfg)
    check = _ENCODER_CHECKS.get(cfg.model.encoder)
    if check is not None:
        check(cfg)


def check_autoregressor(cfg: Config) -> None:
    """Raise ConfigError when ``cfg`` cannot build its autoregressor (CPC only)."""
    _check_known("model.autoregressor", cfg.model.autoregressor, AUTOREGRESSORS)
    check = _AUTOREGRESSOR_CHECKS.get(cfg.model.autoregressor)
    if check is not None:
        check(cfg)


def check_fits(cfg: Config) -> None:
    """Raise ConfigError naming the setting when the data shapes cannot fit the model.

    E.g. Conv1D kernels/strides that reduce a window to nothing, a SampleCNN/TUNe crop
    shorter than its pooling needs, or a frame encoder giving fewer than
    ``predict_steps + 1`` frames. The autoregressor is checked for CPC configs only.
    """
    check_encoder(cfg)
    if cfg.model.family == "cpc":
        check_autoregressor(cfg)
        _check_cpc_objective(cfg)
    elif (
        cfg.augment.enabled
        and cfg.augment.chain == "spectrogram"
        and cfg.model.encoder != "melconv"
    ):
        raise ConfigError(
            f"augment.chain=spectrogram works on the log-mel input of model.encoder=melconv; "
            f"model.encoder={cfg.model.encoder!r} takes raw audio: use augment.chain=waveform"
        )


def model_input_shape(cfg: Config) -> tuple[int, ...]:
    """One example as the whole model takes it: ``(T+k, W)`` windows for CPC with a
    window encoder (conv1d, mel2d), else ``(crop_samples,)`` samples.
    """
    if cfg.model.family == "cpc" and not is_sequence_encoder(cfg):
        return (cfg.num_windows, cfg.window_samples)
    return (cfg.crop_samples,)


def code_hop_samples(cfg: Config) -> int:
    """Input samples between consecutive CPC codes: the window length in window mode, the
    product of the strides (frame) or hop × time pooling (melconv) in sequence mode.
    """
    if cfg.model.encoder == "frame":
        return int(math.prod(cfg.model.frame.strides))
    if cfg.model.encoder == "melconv":
        return cfg.model.melconv.hop * int(math.prod(cfg.model.melconv.time_pools))
    return cfg.window_samples


def is_sequence_encoder(cfg: Config) -> bool:
    """True when the encoder turns a whole crop into a code sequence (frame, melconv)."""
    return len(encoder_output_shape(cfg)) == 2


def _code_positions(cfg: Config) -> int:
    """Codes per crop: T+k windows, or the length of the encoder's sequence."""
    shape = encoder_output_shape(cfg)
    return int(shape[0]) if len(shape) == 2 else cfg.num_windows


def cpc_prediction(cfg: Config) -> str:
    """``model.prediction`` with ``auto`` resolved: last for window encoders, all for sequences."""
    p = cfg.model.prediction
    if p == "auto":
        return "all" if is_sequence_encoder(cfg) else "last"
    return p


def cpc_representation(cfg: Config) -> str:
    """``eval.cpc_representation`` with ``auto`` resolved (c_last for windows, c_mean for
    sequences).
    """
    r = cfg.eval.cpc_representation
    if r == "auto":
        return "c_mean" if is_sequence_encoder(cfg) else "c_last"
    return r


def _check_cpc_objective(cfg: Config) -> None:
    m = cfg.model
    prediction = cpc_prediction(cfg)
    folds = m.autoregressor == "transformer"  # one context vector for the whole crop
    if folds and prediction == "all":
        raise ConfigError(
            "model.prediction=all needs a context at every position, but "
            "model.autoregressor=transformer folds the windows into one vector; use "
            "model.autoregressor=gru or model.prediction=last"
        )
    if folds and cpc_representation(cfg) == "c_mean":
        raise ConfigError(
            "eval.cpc_representation=c_mean needs a context at every position, but "
            "model.autoregressor=transformer gives only c_T; use c_last or z_mean"
        )
    if prediction == "last" and is_sequence_encoder(cfg):
        raise ConfigError(
            f"model.prediction=last predicts from c_T of a fixed window layout; "
            f"model.encoder={m.encoder!r} gives a code sequence: use model.prediction=all"
        )
    if m.negatives != "batch":
        for key, value in (("num_negatives", m.num_negatives), ("queue_size", m.queue_size)):
            if value:
                raise ConfigError(
                    f"model.{key}={value} needs model.negatives=batch (same_step scores "
                    "each prediction against the other clips at its position)"
                )
        return
    candidates = cfg.train.batch_size * _code_positions(cfg) + m.queue_size
    if m.num_negatives > candidates - 1:
        raise ConfigError(
            f"model.num_negatives={m.num_negatives} is more than the {candidates - 1} other "
            f"codes a prediction can be scored against (train.batch_size="
            f"{cfg.train.batch_size} × {_code_positions(cfg)} codes per crop"
            + (f" + model.queue_size={m.queue_size}" if m.queue_size else "")
            + ")"
        )


def check_queue_fits(cfg: Config, train_files: int) -> None:
    """Refuse a negative queue that holds more codes than one pass over the training files
    gives: it would keep codes of the very crop being predicted (MoCo's queue is a small
    fraction of the data; He et al. 2020, §3.2).
    """
    per_pass = train_files * _code_positions(cfg)
    if cfg.model.queue_size and cfg.model.queue_size >= per_pass:
        raise ConfigError(
            f"model.queue_size={cfg.model.queue_size} is not smaller than the {per_pass} codes "
            f"of one pass over the data ({train_files} training files × {_code_positions(cfg)} "
            f"codes per crop), so the queue would hold codes of the clip being predicted; "
            f"use a queue below {per_pass}"
        )


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


def melconv_frames(cfg: Config) -> int:
    """Log-mel frames of one crop (centred STFT: 1 + crop // hop)."""
    return 1 + cfg.crop_samples // cfg.model.melconv.hop


def _check_melconv(cfg: Config) -> None:
    m = cfg.model.melconv
    if len(m.filters) != len(m.time_pools):
        raise ConfigError(
            f"model.melconv.filters has {len(m.filters)} entries but model.melconv.time_pools "
            f"has {len(m.time_pools)}"
        )
    if m.hop > m.n_fft:
        raise ConfigError(
            f"model.melconv.hop={m.hop} is longer than model.melconv.n_fft={m.n_fft}: "
            "samples between the frames would never be seen"
        )
    if m.fmax and m.fmax > cfg.data.sample_rate / 2:
        raise ConfigError(
            f"model.melconv.fmax={m.fmax:g} is above Nyquist at data.sample_rate="
            f"{cfg.data.sample_rate}"
        )
    codes = melconv_output_frames(melconv_frames(cfg), m.time_pools)
    if cfg.model.family == "cpc" and codes < cfg.model.predict_steps + 1:
        raise ConfigError(
            f"{_crop_text(cfg)} gives {codes} codes after model.melconv.time_pools="
            f"{m.time_pools}, fewer than model.predict_steps + 1 = "
            f"{cfg.model.predict_steps + 1}; lengthen the crop"
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
def encoder_input_shape(cfg: Config) -> tuple[int, ...]:
    """Per-example encoder input: (window_samples,) for conv1d, (frames, n_mels) for
    mel2d, (crop_samples,) for frame, samplecnn and tune.
    """
    name = cfg.model.encoder
    if name not in _ENCODER_INPUT_SHAPES:
        raise ConfigError(
            f"model.encoder: {name!r} is not registered; known: {', '.join(sorted(ENCODERS))}"
        )
    return tuple(int(v) for v in _ENCODER_INPUT_SHAPES[name](cfg))


def encoder_output_shape(cfg: Config) -> tuple[int, ...]:
    """Per-example encoder output, computed without creating variables.

    ``(z_dim,)`` for conv1d/mel2d, ``(L, frame.filters)`` for frame, ``(512,)`` for
    SampleCNN on 59,049 samples, ``(rep_dim,)`` for TUNe.
    """
    check_encoder(cfg)
    layer = ENCODERS[cfg.model.encoder](cfg)
    shape = layer.compute_output_shape((None,) + encoder_input_shape(cfg))
    return tuple(int(v) for v in shape[1:])


def encoder_output_dim(cfg: Config) -> int:
    """Feature size of one encoder output vector (the size predictors must produce)."""
    return encoder_output_shape(cfg)[-1]


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
