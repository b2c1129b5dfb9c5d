"""Cross-field validation of a config: one clear line per mistake.

This is the one home of every rule that spans several fields. Which encoder belongs to
which model family is declared where the encoder registers
(``@register_encoder(..., families=...)`` in :mod:`cpc_tf.models.registry`) and asked
of the registry here; whether the data shapes fit the encoder is checked by
``registry.check_fits`` (it needs the layers).
"""

from __future__ import annotations

from cpc_tf.checks import shown
from cpc_tf.config.schema import AugmentConfig, Config, EvalConfig, ModelConfig
from cpc_tf.errors import ConfigError

_ORDERED_PAIRS = (
    ("gain_min_db", "gain_max_db"),
    ("lowpass_min_hz", "lowpass_max_hz"),
    ("highpass_min_hz", "highpass_max_hz"),
    ("delay_min_ms", "delay_max_ms"),
    ("pitch_min_semitones", "pitch_max_semitones"),
)


def validate(cfg: Config) -> None:
    """Checks that span several fields. Each failure names the settings involved."""
    _check_model(cfg.model)
    _check_augment(cfg.augment)
    m, a, rate = cfg.model, cfg.augment, cfg.data.sample_rate
    if (
        a.enabled
        and m.family == "simclr"
        and a.chain == "waveform"
        and max(a.lowpass_max_hz, a.highpass_max_hz) >= rate / 2
    ):
        raise ConfigError(
            f"augment filter cut-offs must stay below Nyquist ({rate / 2:g} Hz) "
            f"at data.sample_rate={rate}"
        )
    if cfg.train.batch_size < 2:
        need = "InfoNCE" if m.family == "cpc" else "contrastive learning"
        raise ConfigError(f"train.batch_size must be at least 2: {need} needs in-batch negatives")
    validate_eval(cfg.eval)
    _check_registered(cfg)


def _positive_ints(key: str, values: list[int]) -> None:
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{key}: needs positive integers, got {shown(values)}")


def _check_model(m: ModelConfig) -> None:
    if m.family == "simclr" and (not m.projection_dims or any(u < 1 for u in m.projection_dims)):
        raise ConfigError("model.projection_dims: needs at least one positive layer size")
    for sec in ("conv1d", "frame"):
        s = getattr(m, sec)
        _positive_ints(f"model.{sec}.strides", s.strides)
        _positive_ints(f"model.{sec}.kernels", s.kernels)
        if len(s.strides) != len(s.kernels):
            raise ConfigError(
                f"model.{sec}.strides and model.{sec}.kernels differ in length "
                f"({len(s.strides)} vs {len(s.kernels)})"
            )
    _positive_ints("model.mel2d.filters", m.mel2d.filters)
    _positive_ints("model.samplecnn.channels", m.samplecnn.channels)
    if m.tune.n_exp > m.tune.n_con:
        raise ConfigError(
            f"model.tune.n_exp={m.tune.n_exp} cannot exceed model.tune.n_con={m.tune.n_con}"
        )


def _check_augment(a: AugmentConfig) -> None:
    for lo_name, hi_name in _ORDERED_PAIRS:
        lo, hi = getattr(a, lo_name), getattr(a, hi_name)
        if lo > hi:
            raise ConfigError(f"augment.{lo_name}={lo} is greater than augment.{hi_name}={hi}")
    for name in ("reverb_room_size", "reverb_reverberance", "reverb_damping"):
        v = getattr(a, name)
        if len(v) != 2 or not 0 <= v[0] <= v[1] <= 100:
            raise ConfigError(
                f"augment.{name}: expected [lo, hi] with 0 <= lo <= hi <= 100, got {shown(v)}"
            )
    for name in ("rrc_time_scale", "rrc_freq_scale"):
        v = getattr(a, name)
        if len(v) != 2 or v[0] > v[1]:
            raise ConfigError(
                f"augment.{name}: expected [lo, hi] with 0 < lo <= hi, got {shown(v)}"
            )


def validate_eval(ev: EvalConfig) -> None:
    """The rules of the ``eval`` section (also asked by ``evaluate`` for its arguments)."""
    if ev.folds == 1:
        raise ConfigError("eval.folds=1 is not a split; use 0 (single split) or >= 2")
    if any(not 0 < f <= 1 for f in ev.label_fractions):
        raise ConfigError(
            f"eval.label_fractions must lie in (0, 1], got {shown(ev.label_fractions)}"
        )


def _check_registered(cfg: Config) -> None:
    """Ask the model registry whether the encoder (and the autoregressor) exist and fit
    the family. Imported here, not at the top: the registry needs the model modules.
    """
    from cpc_tf.models.registry import check_names

    check_names(cfg)
