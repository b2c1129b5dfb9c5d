"""The CLMR augmentation chain as batched, stateless TensorFlow ops.

Seed 000 (CLMR), §3.1 and appendix B, lists seven transforms applied in a fixed
order, each with its own probability of firing: polarity inversion, white Gaussian
noise (80 dB SNR), gain in [-6, 0] dB, a coin-flip low-pass (cut-off U[2200, 4000]
Hz) or high-pass (U[200, 1200] Hz) filter, a 200-500 ms delay in 50 ms steps mixed
as ``(x + 0.5 * delayed) / 2``, a pitch shift of U[-5, 5] semitones that keeps the
duration, and a reverb whose room size, reverberance and damping are each U[0, 100].
The numbers themselves live in :class:`cpc_tf.config.AugmentConfig`.

CLMR ran pitch shift and reverb through sox on the CPU, one clip at a time. Here every
transform works on a whole batch ``x: float32 [B, n]`` at once, with an independent
draw per example, so the chain can run inside ``tf.data`` or as a layer on an
accelerator. All randomness comes from ``tf.random.stateless_*`` ops keyed
by an explicit ``[2]`` integer seed, split once per transform, so a seed fixes the
output exactly.

Each transform is also exposed on its own with explicit per-example parameters
(:func:`polarity`, :func:`add_noise`, :func:`apply_gain`, :func:`butterworth_filter`,
:func:`delay`, :func:`pitch_shift`, :func:`reverb`) so that its behaviour can be
checked against ground truth. They live in :mod:`cpc_tf.dsp.transforms`,
:mod:`cpc_tf.dsp.pitch` and :mod:`cpc_tf.dsp.reverb` and are re-exported here; this
module keeps the chain (:func:`augment_batch`, :func:`augment_dataset`) and the Keras
layer :class:`AudioAugment`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from cpc_tf.config import AugmentConfig
from cpc_tf.dsp.batch_ops import RNG_ALG, as_batch
from cpc_tf.dsp.pitch import pitch_shift
from cpc_tf.dsp.reverb import reverb, reverb_impulse_response, reverb_parameters
from cpc_tf.dsp.transforms import (
    add_noise,
    apply_gain,
    butterworth_filter,
    butterworth_gain,
    delay,
    delay_choices_samples,
    polarity,
)

__all__ = [
    "AudioAugment",
    "augment_batch",
    "augment_dataset",
    "add_noise",
    "apply_gain",
    "butterworth_filter",
    "butterworth_gain",
    "delay",
    "delay_choices_samples",
    "pitch_shift",
    "polarity",
    "reverb",
    "reverb_impulse_response",
    "reverb_parameters",
]

_TRANSFORMS = ("polarity", "noise", "gain", "filter", "delay", "pitch", "reverb")


# ------------------------------------------------------------------ the chain
def _fires(seed: tf.Tensor, batch: tf.Tensor, p: float) -> tf.Tensor:
    """[B] bool: true with probability p, independently per example."""
    if p >= 1.0:
        return tf.ones(tf.reshape(batch, [1]), tf.bool)
    return tf.random.stateless_uniform(tf.reshape(batch, [1]), seed=seed, alg=RNG_ALG) < float(p)


def _reverb_ir_seconds(cfg: AugmentConfig) -> float:
    top = reverb_parameters(cfg.reverb_room_size[1], cfg.reverb_reverberance[1], 0.0)
    return top["rt60"] + top["predelay"]


def augment_batch(
    x: tf.Tensor,
    cfg: AugmentConfig,
    sample_rate: int,
    seed: tf.Tensor,
    *,
    skip_unfired: bool = True,
) -> tf.Tensor:
    """Run the whole CLMR chain (Spijkervet & Burgoyne 2021, appendix B order) on
    ``x: float32 [B, n]``.

    Every example draws, independently, whether each transform fires (probability
    ``cfg.<name>_p``) and that transform's parameters. ``seed`` is a ``[2]`` integer
    tensor; the same seed gives the same output. A transform with probability 0 is not
    computed at all. Returns ``[B, n]``; ``cfg.enabled = False`` returns ``x`` unchanged.

    ``skip_unfired`` (default) runs the costly transforms (noise, filter, pitch shift,
    reverb) only on the examples where they fire, gathering them into a smaller batch
    and scattering the results back. That saves CPU time in ``tf.data`` but gives the
    sub-batch a data-dependent size, which XLA cannot compile; pass ``False`` under
    ``jit_compile`` (every example is then transformed and the unfired ones are
    discarded). Both modes are deterministic and draw the same firing decisions and
    parameters; only the random noise of the noise and reverb transforms is drawn for
    a different batch shape, so its realisation differs between the two modes.
    """
    x = as_batch(x)
    if not cfg.enabled:
        return x
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    batch = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, num=len(_TRANSFORMS), alg=RNG_ALG)
    keys = {
        name: tf.random.experimental.stateless_split(seeds[i], num=5, alg=RNG_ALG)
        for i, name in enumerate(_TRANSFORMS)
    }

    def uniform(name: str, slot: int, lo: float, hi: float) -> tf.Tensor:
        return tf.random.stateless_uniform(
            tf.reshape(batch, [1]),
            seed=keys[name][slot],
            minval=float(lo),
            maxval=float(hi),
            alg=RNG_ALG,
        )

    def apply(
        x: tf.Tensor,
        name: str,
        p: float,
        fn: Any,
        params: dict[str, tf.Tensor],
        costly: bool = False,
    ) -> tf.Tensor:
        """X where the transform does not fire, fn(x, params) where it does."""
        if p <= 0.0:
            return x
        mask = _fires(keys[name][0], batch, p)
        if not (costly and skip_unfired):
            return tf.where(mask[:, None], fn(x, params), x)
        rows = tf.where(mask)
        picked = {k: tf.gather(v, rows[:, 0]) for k, v in params.items()}
        return tf.tensor_scatter_nd_update(x, rows, fn(tf.gather(x, rows[:, 0]), picked))

    x = apply(x, "polarity", cfg.polarity_p, lambda v, q: polarity(v), {})
    x = apply(
        x,
        "noise",
        cfg.noise_p,
        lambda v, q: add_noise(v, cfg.noise_snr_db, keys["noise"][1]),
        {},
        costly=True,
    )
    if cfg.gain_p > 0:
        x = apply(
            x,
            "gain",
            cfg.gain_p,
            lambda v, q: apply_gain(v, q["db"]),
            {"db": uniform("gain", 1, cfg.gain_min_db, cfg.gain_max_db)},
        )
    if cfg.filter_p > 0:
        highpass = _fires(keys["filter"][1], batch, 0.5)
        cutoff = tf.where(
            highpass,
            uniform("filter", 3, cfg.highpass_min_hz, cfg.highpass_max_hz),
            uniform("filter", 2, cfg.lowpass_min_hz, cfg.lowpass_max_hz),
        )
        x = apply(
            x,
            "filter",
            cfg.filter_p,
            lambda v, q: butterworth_filter(
                v, q["cutoff"], q["highpass"], cfg.filter_order, sample_rate
            ),
            {"cutoff": cutoff, "highpass": highpass},
            costly=True,
        )
    if cfg.delay_p > 0:
        choices = delay_choices_samples(cfg, sample_rate)
        pick = tf.random.stateless_uniform(
            tf.reshape(batch, [1]),
            seed=keys["delay"][1],
            minval=0,
            maxval=len(choices),
            dtype=tf.int32,
            alg=RNG_ALG,
        )
        x = apply(
            x,
            "delay",
            cfg.delay_p,
            lambda v, q: delay(v, q["samples"], cfg.delay_mix),
            {"samples": tf.gather(tf.constant(choices, tf.int32), pick)},
        )
    if cfg.pitch_p > 0:
        x = apply(
            x,
            "pitch",
            cfg.pitch_p,
            lambda v, q: pitch_shift(
                v, q["semitones"], sample_rate, max_semitones=cfg.pitch_max_semitones
            ),
            {"semitones": uniform("pitch", 1, cfg.pitch_min_semitones, cfg.pitch_max_semitones)},
            costly=True,
        )
    if cfg.reverb_p > 0:
        x = apply(
            x,
            "reverb",
            cfg.reverb_p,
            lambda v, q: reverb(
                v,
                q["room"],
                q["rev"],
                q["damp"],
                sample_rate,
                keys["reverb"][4],
                ir_seconds=_reverb_ir_seconds(cfg),
            ),
            {
                "room": uniform("reverb", 1, *cfg.reverb_room_size),
                "rev": uniform("reverb", 2, *cfg.reverb_reverberance),
                "damp": uniform("reverb", 3, *cfg.reverb_damping),
            },
            costly=True,
        )
    return x


def augment_dataset(
    dataset: tf.data.Dataset, cfg: AugmentConfig, sample_rate: int, seed: int = 0
) -> tf.data.Dataset:
    """Map :func:`augment_batch` over a dataset of ``[B, n]`` batches.

    Batch ``i`` uses the seed ``[seed, i]``, so the stream is reproducible however many
    parallel calls tf.data makes.
    """

    def _map(index: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
        return augment_batch(
            batch, cfg, sample_rate, tf.stack([tf.constant(seed, tf.int64), index])
        )

    return dataset.enumerate().map(_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _to_config(augment: AugmentConfig | Mapping[str, Any] | None) -> AugmentConfig:
    if augment is None:
        return AugmentConfig()
    if isinstance(augment, AugmentConfig):
        return dataclasses.replace(augment)
    return AugmentConfig(**dict(augment))


@keras.saving.register_keras_serializable(package="cpc_tf")
class AudioAugment(keras.layers.Layer):
    """The CLMR chain (Spijkervet & Burgoyne 2021, appendix B) as a Keras layer, for augmentation on
    the accelerator.

    ``[B, n] -> [B, n]``. In training it draws a fresh ``[2]`` seed from its
    ``keras.random.SeedGenerator`` on every call; otherwise (``training`` false or not
    given) it returns its input unchanged. ``get_config`` stores the plain
    :class:`~cpc_tf.config.AugmentConfig` fields, the sample rate, the seed and
    ``skip_unfired`` (off by default here, so the layer compiles under XLA; see
    :func:`augment_batch`). Computation is always float32, whatever the global dtype
    policy.
    """

    def __init__(
        self,
        augment: AugmentConfig | Mapping[str, Any] | None = None,
        sample_rate: int = 22050,
        seed: int | None = None,
        skip_unfired: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.augment = _to_config(augment)
        self.sample_rate = int(sample_rate)
        self.seed = seed
        self.skip_unfired = bool(skip_unfired)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        x = tf.cast(inputs, tf.float32)
        if not training or not self.augment.enabled:
            return x
        return augment_batch(
            x,
            self.augment,
            self.sample_rate,
            tf.cast(self.seed_generator.next(), tf.int64),
            skip_unfired=self.skip_unfired,
        )

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "augment": dataclasses.asdict(self.augment),
                "sample_rate": self.sample_rate,
                "seed": self.seed,
                "skip_unfired": self.skip_unfired,
            }
        )
        return config
