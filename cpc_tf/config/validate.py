"""Cross-field validation of a config: one clear line per mistake."""

from __future__ import annotations

from cpc_tf.config.schema import Config
from cpc_tf.errors import ConfigError


def validate(cfg: Config) -> None:
    """Checks that span several fields. Each failure names the settings involved."""
    # Which encoder fits which family, and whether the shapes fit the encoder, is checked
    # where the encoders register (cpc_tf.models.registry.check_fits).
    m, d, a, t = cfg.model, cfg.data, cfg.augment, cfg.train
    if m.family == "simclr" and (not m.projection_dims or any(u < 1 for u in m.projection_dims)):
        raise ConfigError("model.projection_dims: needs at least one positive layer size")
    for name in ("strides", "kernels"):
        for sec in ("conv1d", "frame"):
            vals = getattr(getattr(m, sec), name)
            if not vals or any(v < 1 for v in vals):
                raise ConfigError(f"model.{sec}.{name}: needs positive integers, got {vals}")
    for sec in ("conv1d", "frame"):
        s = getattr(m, sec)
        if len(s.strides) != len(s.kernels):
            raise ConfigError(f"model.{sec}.strides and model.{sec}.kernels differ in length "
                              f"({len(s.strides)} vs {len(s.kernels)})")
    if not m.mel2d.filters or any(v < 1 for v in m.mel2d.filters):
        raise ConfigError(f"model.mel2d.filters: needs positive integers, got {m.mel2d.filters}")
    if not m.samplecnn.channels or any(v < 1 for v in m.samplecnn.channels):
        raise ConfigError(f"model.samplecnn.channels: needs positive integers, got {m.samplecnn.channels}")
    if m.tune.n_exp > m.tune.n_con:
        raise ConfigError(f"model.tune.n_exp={m.tune.n_exp} cannot exceed model.tune.n_con={m.tune.n_con}")
    for lo_name, hi_name in (("gain_min_db", "gain_max_db"), ("lowpass_min_hz", "lowpass_max_hz"),
                             ("highpass_min_hz", "highpass_max_hz"), ("delay_min_ms", "delay_max_ms"),
                             ("pitch_min_semitones", "pitch_max_semitones")):
        lo, hi = getattr(a, lo_name), getattr(a, hi_name)
        if lo > hi:
            raise ConfigError(f"augment.{lo_name}={lo} is greater than augment.{hi_name}={hi}")
    for name in ("reverb_room_size", "reverb_reverberance", "reverb_damping"):
        v = getattr(a, name)
        if len(v) != 2 or not 0 <= v[0] <= v[1] <= 100:
            raise ConfigError(f"augment.{name}: expected [lo, hi] with 0 <= lo <= hi <= 100, got {v}")
    for name in ("rrc_time_scale", "rrc_freq_scale"):
        v = getattr(a, name)
        if len(v) != 2 or v[0] > v[1]:
            raise ConfigError(f"augment.{name}: expected [lo, hi] with 0 < lo <= hi, got {v}")
    nyquist = d.sample_rate / 2
    if a.enabled and m.family == "simclr" and a.chain == "waveform":
        if a.lowpass_max_hz >= nyquist or a.highpass_max_hz >= nyquist:
            raise ConfigError(f"augment filter cut-offs must stay below Nyquist ({nyquist:g} Hz) "
                              f"at data.sample_rate={d.sample_rate}")
    if m.family == "simclr" and t.batch_size < 2:
        raise ConfigError("train.batch_size must be at least 2: contrastive learning needs in-batch negatives")
    if m.family == "cpc" and t.batch_size < 2:
        raise ConfigError("train.batch_size must be at least 2: InfoNCE needs in-batch negatives")
    if cfg.eval.folds == 1:
        raise ConfigError("eval.folds=1 is not a split; use 0 (single split) or >= 2")
    if any(not 0 < f <= 1 for f in cfg.eval.label_fractions):
        raise ConfigError(f"eval.label_fractions must lie in (0, 1], got {cfg.eval.label_fractions}")

