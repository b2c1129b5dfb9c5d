"""Whether a config's data shapes fit its model: each raises ConfigError naming the settings.

The per-encoder checks (``_check_conv1d`` ...) are attached to their builders in
:mod:`cpc_tf.models.registry`; :func:`check_fits` runs the checks of a whole config,
:func:`check_queue_fits` the negative queue against the training set, and
:func:`cpc_prediction` / :func:`cpc_representation` resolve ``auto``.
"""

from __future__ import annotations

from cpc_tf.config import Config
from cpc_tf.errors import ConfigError
from cpc_tf.models.encoders import frame_encoder_length, samplecnn_output_steps
from cpc_tf.models.layers import conv_output_length
from cpc_tf.models.melconv import melconv_output_frames
from cpc_tf.models.registration import check_autoregressor, check_encoder
from cpc_tf.models.shapes import (
    _code_positions,
    encoder_output_shape,
    is_sequence_encoder,
    melconv_frames,
)
from cpc_tf.models.tunet import tune_plan


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
