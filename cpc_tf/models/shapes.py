"""The shapes a config's model sees: encoder input and output, whole-model input, code hop.

Computed from the registered builders without creating variables; import through
:mod:`cpc_tf.models.registry`, which registers the builders.
"""

from __future__ import annotations

import math

from cpc_tf.config import Config
from cpc_tf.errors import ConfigError
from cpc_tf.models.registration import _ENCODER_INPUT_SHAPES, ENCODERS, check_encoder


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


def melconv_frames(cfg: Config) -> int:
    """Log-mel frames of one crop (centred STFT: 1 + crop // hop)."""
    return 1 + cfg.crop_samples // cfg.model.melconv.hop


def contrastive_chance(cfg: Config) -> float:
    """The contrastive accuracy of guessing: one over the candidates a prediction is scored against.

    SimCLR scores a view against the other 2B-1 views of the global batch B (Chen et al. 2020).
    CPC with ``same_step`` negatives scores a prediction against the B codes at the same step;
    with ``batch`` negatives, against every code of the global batch (B clips × codes per clip),
    or ``num_negatives`` drawn ones plus the positive. A queue of earlier codes only adds
    candidates, so the value is an upper bound of chance there.
    """
    batch = int(cfg.train.batch_size)
    if cfg.model.family == "simclr":
        return 1.0 / max(1, 2 * batch - 1)
    if cfg.model.negatives == "same_step":
        return 1.0 / max(1, batch)
    if cfg.model.num_negatives > 0:
        return 1.0 / (cfg.model.num_negatives + 1)
    return 1.0 / max(1, batch * _code_positions(cfg))
