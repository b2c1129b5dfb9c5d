"""SimCLR end to end on the engine: contrastive accuracy climbs well above chance."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY_SIMCLR, tiny_config

from cpc_tf.errors import ConfigError
from cpc_tf.synth import CLASSES, synth_clip
from cpc_tf.training import Trainer, compile_model


def test_simclr_accuracy_climbs_on_synthetic_clips():
    """Two random crops of the same clip must find each other among 2N-1 candidates."""
    cfg = tiny_config(TINY_SIMCLR, augment={"enabled": False}, train={"batch_size": 8})
    n = cfg.crop_samples
    clips = np.stack(
        [
            synth_clip(CLASSES[i % len(CLASSES)], 1.0, cfg.data.sample_rate, seed=i)
            for i in range(32)
        ]
    )  # 32 distinct clips of 8000 samples
    rng = np.random.default_rng(0)

    def batches():
        while True:
            idx = rng.choice(len(clips), size=8, replace=False)
            starts = rng.integers(0, clips.shape[1] - n, size=(2, 8))
            v1 = np.stack([clips[i, s : s + n] for i, s in zip(idx, starts[0])])
            v2 = np.stack([clips[i, s : s + n] for i, s in zip(idx, starts[1])])
            yield v1.astype("float32"), v2.astype("float32")

    spec = (tf.TensorSpec([8, n], tf.float32),) * 2
    model = compile_model(cfg)
    trainer = Trainer(
        model,
        tf.distribute.get_strategy(),
        lambda ctx, epoch, training: tf.data.Dataset.from_generator(batches, output_signature=spec),
    )
    it = iter(trainer._dist(0, True))
    accs = [float(trainer.train_fn(next(it))["simclr_acc"]) for _ in range(600)]
    start, end = np.mean(accs[:10]), np.mean(accs[-20:])
    chance = 1 / 15
    assert end > 8 * chance and end > start + 0.2, (start, end)


def test_batch_of_one_is_refused():
    with pytest.raises(ConfigError, match="batch_size must be at least 2"):
        tiny_config(TINY_SIMCLR, train={"batch_size": 1})
