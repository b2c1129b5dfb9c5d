"""The CPC objective of the strong implementations: all-position predictions, negatives from
every window of the batch (same clip included), drawn negatives, the queue -- against
hand-computed values, and across two replicas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY_CPC, tiny_config
from test_losses import _two_replica_strategy

from cpc_tf.config import from_dict
from cpc_tf.errors import ConfigError
from cpc_tf.models.factory import build_model
from cpc_tf.models.heads import NegativeQueue
from cpc_tf.models.losses import info_nce_windows
from cpc_tf.models.registry import check_fits


def _xent(logits: np.ndarray, label: int) -> float:
    m = logits.max()
    return float(m + math.log(np.exp(logits - m).sum()) - logits[label])


def test_all_positions_against_every_window_hand_computed():
    # B=2 clips, S=3 windows, D=2; 2 context positions, k = 1 and 2.
    codes = np.array([[[1, 0], [0, 1], [1, 1]], [[2, 0], [0, 2], [-1, 1]]], np.float32)
    preds = np.array(
        [[[[1, 0], [0, 1]], [[0.5, 0.5], [1, -1]]], [[[0, 1], [1, 1]], [[-1, 0], [0, 0.5]]]],
        np.float32,
    )  # [B, P, K, D]
    loss, acc = info_nce_windows(tf.constant(preds), tf.constant(codes))
    cands = codes.reshape(-1, 2)  # all 6 windows, the same clip's included
    for k in (1, 2):
        expected, hits = [], []
        for b in range(2):
            for t in range(min(2, 3 - k)):  # positions whose target t+k exists
                logits = cands @ preds[b, t, k - 1]
                label = b * 3 + t + k
                expected.append(_xent(logits, label))
                hits.append(float(np.argmax(logits) == label))
        assert float(loss[k - 1]) == pytest.approx(np.mean(expected), rel=1e-6)
        assert float(acc[k - 1]) == pytest.approx(np.mean(hits))


def test_same_clip_windows_are_negatives():
    # One clip only: every negative is another window of the same clip.
    codes = np.array([[[1, 0], [0, 1], [3, 0]]], np.float32)
    preds = np.array([[[[1, 0]]]], np.float32)  # position 0 predicts window 1
    loss, _ = info_nce_windows(tf.constant(preds), tf.constant(codes))
    logits = codes[0] @ preds[0, 0, 0]  # [1, 0, 3]: window 2 outscores the positive
    assert float(loss[0]) == pytest.approx(_xent(logits, 1), rel=1e-6)


def test_drawn_negatives_never_draw_the_positive():
    # Two candidates: the positive z1 and z0. Every one of the 5 drawn negatives must be z0.
    codes = np.array([[[0.3, 0.0], [1.0, 0.0]]], np.float32)
    preds = np.array([[[[2.0, 0.0]]]], np.float32)
    for step in range(5):
        loss, acc = info_nce_windows(
            tf.constant(preds), tf.constant(codes), num_negatives=5, seed=tf.constant([7, step])
        )
        s_pos, s_neg = 2.0, 0.6
        assert float(loss[0]) == pytest.approx(
            math.log(math.exp(s_pos) + 5 * math.exp(s_neg)) - s_pos, rel=1e-6
        )
        assert float(acc[0]) == 1.0


def test_queue_rows_join_the_candidates_and_empty_rows_do_not():
    codes = np.array([[[1, 0], [0, 1]]], np.float32)
    preds = np.array([[[[0, 1]]]], np.float32)  # position 0 predicts window 1
    queue = np.array([[0, 2], [1, 1], [0, 50], [0, 50]], np.float32)  # last two rows still empty
    loss, acc = info_nce_windows(
        tf.constant(preds), tf.constant(codes), queue=tf.constant(queue), queue_count=tf.constant(2)
    )
    logits = np.concatenate([codes[0], queue[:2]]) @ preds[0, 0, 0]  # [0, 1, 2, 1]
    assert float(loss[0]) == pytest.approx(_xent(logits, 1), rel=1e-6)
    assert float(acc[0]) == 0.0  # the queue row [0, 2] outscores the positive


def test_negative_queue_is_first_in_first_out():
    q = NegativeQueue(3, 2)
    q.build()
    q.push(tf.constant([[1.0, 1.0], [2.0, 2.0]]))
    assert int(q.count.numpy()) == 2
    q.push(tf.constant([[3.0, 3.0], [4.0, 4.0]]))
    np.testing.assert_array_equal(q.codes.numpy(), [[3, 3], [4, 4], [1, 1]])
    assert int(q.count.numpy()) == 3


@pytest.mark.parametrize("num_negatives", [0, 7])
def test_two_replicas_equal_one_device(num_negatives: int):
    strategy = _two_replica_strategy()
    rng = np.random.default_rng(0)
    preds = tf.constant(rng.normal(size=(4, 5, 2, 8)).astype(np.float32))
    codes = tf.constant(rng.normal(size=(4, 7, 8)).astype(np.float32))
    seed = tf.constant([3, 11])

    def fn(p: tf.Tensor, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        loss, acc = info_nce_windows(p, z, num_negatives=num_negatives, seed=seed)
        return tf.reduce_mean(loss), tf.reduce_mean(acc)

    single = fn(preds, codes)
    half = 2  # each replica holds two of the four clips

    def value_fn(ctx: tf.distribute.ValueContext) -> tuple[tf.Tensor, tf.Tensor]:
        r = ctx.replica_id_in_sync_group
        return preds[r * half : (r + 1) * half], codes[r * half : (r + 1) * half]

    values = strategy.experimental_distribute_values_from_function(value_fn)

    @tf.function
    def step(v: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        loss, acc = strategy.run(fn, args=v)
        return strategy.reduce("MEAN", loss, axis=None), strategy.reduce("MEAN", acc, axis=None)

    loss, acc = step(values)
    assert float(loss) == pytest.approx(float(single[0]), rel=1e-5)
    assert float(acc) == pytest.approx(float(single[1]), abs=1e-6)


def _batch_cpc(**model: object):
    return tiny_config(TINY_CPC, model={"prediction": "all", "negatives": "batch", **model})


def test_cpc_model_trains_a_step_with_every_new_option():
    cfg = _batch_cpc(num_negatives=8, queue_size=20)
    model = build_model(cfg)
    model.compile(optimizer="adam")
    x = tf.random.stateless_normal([4, cfg.num_windows, cfg.window_samples], [1, 2])
    out = model.train_step(x)
    assert np.isfinite(float(out["loss"])) and set(out) >= {"cpc_acc", "cpc_acc_k1", "cpc_acc_k2"}
    # the queue took the 4 clips × 6 windows of the step (capped at its size)
    assert int(model.queue.count.numpy()) == 20


def test_queue_and_negatives_are_checked_at_start_up():
    with pytest.raises(
        ConfigError, match="model.num_negatives=100 is more than the 23 other codes"
    ):
        check_fits(_batch_cpc(num_negatives=100))
    with pytest.raises(ConfigError, match="model.queue_size=5 needs model.negatives=batch"):
        check_fits(tiny_config(TINY_CPC, model={"queue_size": 5}))
    with pytest.raises(ConfigError, match="model.prediction=all needs a context at every position"):
        check_fits(
            tiny_config(TINY_CPC, model={"prediction": "all", "autoregressor": "transformer"})
        )


def test_seed_scheme_is_unchanged_by_default():
    """prediction auto = last, negatives same_step: the seed's loss (Bajorath et al. 2021
    §2.2.5).
    """
    from cpc_tf.models.losses import info_nce

    cfg = from_dict(TINY_CPC)
    model = build_model(cfg)
    x = tf.random.stateless_normal([4, cfg.num_windows, cfg.window_samples], [3, 4])
    loss, _ = model.contrastive_loss(x, training=False)
    z, c = model.codes_and_contexts(x)
    preds = model.predictors(c[:, -1])  # [B, k, D] from c_T
    targets = z[:, cfg.model.context_steps :]
    expected, _ = info_nce(tf.transpose(preds, [1, 0, 2]), tf.transpose(targets, [1, 0, 2]))
    assert float(loss) == pytest.approx(float(tf.reduce_mean(expected)), rel=1e-5)
