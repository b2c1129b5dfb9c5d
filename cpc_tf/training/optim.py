"""The optimiser, its learning-rate schedule, the dtype policy, and the compiled model."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from cpc_tf.config import Config


# ------------------------------------------------------------------ optimiser
@keras.saving.register_keras_serializable(package="cpc_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then constant or a cosine decay to 0 at ``total_steps``.

    The cosine follows Loshchilov & Hutter 2017 (SGDR, without restarts), as SimCLR
    (Chen et al. 2020) and CPC_audio train. Past ``total_steps`` the rate stays at 0.
    """

    def __init__(
        self, peak: float, warmup_steps: int = 0, total_steps: int = 0, kind: str = "constant"
    ) -> None:
        if kind not in ("constant", "cosine"):
            raise ValueError(f"unknown learning-rate schedule {kind!r}")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.kind = kind

    def __call__(self, step: Any) -> Any:
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        rate = (
            self.peak * tf.minimum(1.0, (step + 1.0) / warm)
            if self.warmup_steps
            else tf.constant(self.peak)
        )
        if self.kind == "cosine" and self.total_steps > self.warmup_steps:
            span = float(self.total_steps - self.warmup_steps)
            progress = tf.clip_by_value((step - float(self.warmup_steps)) / span, 0.0, 1.0)
            rate = rate * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return rate

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "kind": self.kind,
        }


def make_optimizer(cfg: Config, total_steps: int = 0) -> keras.optimizers.Optimizer:
    """The configured optimiser with the configured learning rate (CLMR's public code ignores the
    configured rate).

    ``total_steps`` (epochs × steps per epoch) is where a cosine schedule reaches 0.
    """
    t = cfg.train
    rate: Any = t.learning_rate
    if t.warmup_steps or t.lr_schedule != "constant":
        rate = WarmupSchedule(t.learning_rate, t.warmup_steps, total_steps, t.lr_schedule)
    kw: dict[str, Any] = {"learning_rate": rate}
    if t.clipnorm > 0:
        kw["clipnorm"] = t.clipnorm
    if t.optimizer == "adam":
        opt = keras.optimizers.Adam(
            beta_1=t.beta_1, beta_2=t.beta_2, weight_decay=t.weight_decay or None, **kw
        )
    elif t.optimizer == "adamw":
        opt = keras.optimizers.AdamW(
            beta_1=t.beta_1, beta_2=t.beta_2, weight_decay=t.weight_decay, **kw
        )
    else:
        opt = keras.optimizers.SGD(momentum=t.beta_1, weight_decay=t.weight_decay or None, **kw)
    if t.mixed_precision and policy_name(cfg) == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def policy_name(cfg: Config) -> str:
    """Keras' dtype policy for `cfg`: mixed_float16 on GPUs, mixed_bfloat16 on CPUs, else
    float32.
    """
    if not cfg.train.mixed_precision:
        return "float32"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Set Keras' dtype policy to `name` while a model is built, then restore it."""
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def compile_model(
    cfg: Config,
    strategy: tf.distribute.Strategy | None = None,
    total_steps: int = 0,
    classes: list[str] | None = None,
) -> keras.Model:
    """A built, compiled model for `cfg`, its variables created under `strategy`.

    ``total_steps`` sets the end of a cosine learning-rate schedule; ``classes`` (with
    ``train.supervised``) the label set of the supervised head.
    """
    from cpc_tf.models.factory import build_model

    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(cfg.train.seed)
    with dtype_policy(policy_name(cfg)), strategy.scope():
        model = build_model(cfg, classes=classes)
        model.compile(optimizer=make_optimizer(cfg, total_steps))
        model.optimizer.build(model.trainable_variables)
    return model
