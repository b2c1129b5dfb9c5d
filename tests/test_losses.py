"""InfoNCE and NT-Xent against hand-computed values, and across two replicas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from cpc_tf.models.losses import info_nce, nt_xent, step_weights


def _np_xent(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return lse - logits[np.arange(len(labels)), labels]


def test_info_nce_hand_computed():
    pred = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    targ = np.array([[1.0, 1.0], [0.5, 1.0]], np.float32)
    # logits = pred @ targ.T = [[1, 0.5], [2, 2]]; positives on the diagonal
    row0 = math.log(math.exp(1) + math.exp(0.5)) - 1.0
    row1 = math.log(math.exp(2) + math.exp(2)) - 2.0
    loss, acc = info_nce(tf.constant(pred), tf.constant(targ))
    assert float(loss) == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # row 0: argmax 0 (correct); row 1: tie, argmax picks index 0 (wrong)
    assert float(acc) == pytest.approx(0.5)


def test_info_nce_is_stable_for_huge_scores():
    pred = tf.constant([[1000.0, 0.0], [0.0, 1000.0]])
    targ = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    loss, acc = info_nce(pred, targ)
    assert np.isfinite(float(loss)) and float(loss) < 1e-6  # exp(1000) would overflow
    assert float(acc) == 1.0


def test_info_nce_leading_axes_are_independent_problems():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3, 5, 4)).astype(np.float32)
    t = rng.normal(size=(3, 5, 4)).astype(np.float32)
    loss, _ = info_nce(tf.constant(p), tf.constant(t))
    expected = [_np_xent(p[k] @ t[k].T, np.arange(5)).mean() for k in range(3)]
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_info_nce_at_random_is_about_log_n():
    rng = np.random.default_rng(1)
    n = 64
    p = rng.normal(size=(n, 32)).astype(np.float32) * 0.01
    t = rng.normal(size=(n, 32)).astype(np.float32) * 0.01
    loss, _ = info_nce(tf.constant(p), tf.constant(t))
    assert float(loss) == pytest.approx(math.log(n), abs=0.01)


def test_step_weights():
    np.testing.assert_allclose(step_weights(3, "uniform").numpy(), [1 / 3] * 3)
    np.testing.assert_allclose(step_weights(3, "linear").numpy(), [3 / 6, 2 / 6, 1 / 6])


def _np_nt_xent(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    sim = z @ z.T / tau
    np.fill_diagonal(sim, -np.inf)
    labels = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    m = np.max(sim, axis=1)
    lse = m + np.log(np.exp(sim - m[:, None]).sum(axis=1))
    return float(np.mean(lse - sim[np.arange(2 * n), labels]))


def test_nt_xent_hand_computed_two_pairs():
    z1 = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    z2 = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)
    tau = 0.5
    # query z1[0]=(1,0): candidates z1[1]=(0,1) cos 0; z2[0]=(1,0) cos 1 (positive);
    # z2[1] cos 1/sqrt2
    c = 1 / math.sqrt(2)
    q0 = -2.0 + math.log(math.exp(0) + math.exp(2.0) + math.exp(2 * c))
    loss, acc = nt_xent(tf.constant(z1), tf.constant(z2), tau)
    expected = _np_nt_xent(z1, z2, tau)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # the first query's term, checked by hand, is part of that mean
    z = np.concatenate([z1, z2])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    assert q0 == pytest.approx(
        _np_xent((z @ z.T / tau - np.eye(4) * 1e9)[:1], np.array([2]))[0], rel=1e-6
    )
    assert 0.0 <= float(acc) <= 1.0


def test_nt_xent_identical_views_low_and_noise_about_log_2n_minus_1():
    rng = np.random.default_rng(2)
    n = 32
    z = rng.normal(size=(n, 128)).astype(np.float32)
    same, acc = nt_xent(tf.constant(z), tf.constant(z), 0.1)
    assert float(acc) == 1.0 and float(same) < 0.05
    a = rng.normal(size=(n, 512)).astype(np.float32)
    b = rng.normal(size=(n, 512)).astype(np.float32)
    noise, _ = nt_xent(tf.constant(a), tf.constant(b), 0.5)
    assert float(noise) == pytest.approx(math.log(2 * n - 1), abs=0.15)


def _two_replica_strategy() -> tf.distribute.Strategy:
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.skip("needs two logical CPU devices (configured in conftest before TF starts)")
    return tf.distribute.MirroredStrategy(
        [cpus[0].name, cpus[1].name], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )


def _per_replica_mean(strategy, fn, *tensors):
    """Run `fn` on each replica's half of the global batch and average (= engine's reduce)."""
    global_b = tensors[0].shape[-2] if tensors[0].shape.rank > 2 else tensors[0].shape[0]
    half = global_b // 2

    def value_fn(ctx):
        rid = ctx.replica_id_in_sync_group
        out = []
        for t in tensors:
            if t.shape.rank > 2:
                out.append(t[:, rid * half : (rid + 1) * half])
            else:
                out.append(t[rid * half : (rid + 1) * half])
        return tuple(out)

    values = strategy.experimental_distribute_values_from_function(value_fn)

    @tf.function
    def step(v):
        loss, acc = strategy.run(lambda *x: fn(*x), args=v)
        return (strategy.reduce("MEAN", loss, axis=None), strategy.reduce("MEAN", acc, axis=None))

    return step(values)


def test_info_nce_two_replicas_equals_single_device():
    strategy = _two_replica_strategy()
    rng = np.random.default_rng(3)
    p = tf.constant(rng.normal(size=(3, 8, 16)).astype(np.float32))
    t = tf.constant(rng.normal(size=(3, 8, 16)).astype(np.float32))
    single_loss, single_acc = info_nce(p, t)
    loss, acc = _per_replica_mean(
        strategy, lambda a, b: tuple(tf.reduce_mean(v) for v in info_nce(a, b)), p, t
    )
    assert float(loss) == pytest.approx(float(tf.reduce_mean(single_loss)), rel=1e-5)
    assert float(acc) == pytest.approx(float(tf.reduce_mean(single_acc)), abs=1e-6)
    # and without gathering, each replica would only see half the negatives: the loss differs
    local, _ = _per_replica_mean(
        strategy, lambda a, b: tuple(tf.reduce_mean(v) for v in info_nce(a, b, gather=False)), p, t
    )
    assert abs(float(local) - float(tf.reduce_mean(single_loss))) > 1e-3


def test_nt_xent_two_replicas_equals_single_device():
    strategy = _two_replica_strategy()
    rng = np.random.default_rng(4)
    a = tf.constant(rng.normal(size=(8, 16)).astype(np.float32))
    b = tf.constant(rng.normal(size=(8, 16)).astype(np.float32))
    single, _ = nt_xent(a, b, 0.5)
    loss, _ = _per_replica_mean(strategy, lambda x, y: nt_xent(x, y, 0.5), a, b)
    assert float(loss) == pytest.approx(float(single), rel=1e-5)


def test_gathered_gradient_matches_single_device():
    """all_gather is differentiable: the summed replica gradients equal the global one."""
    strategy = _two_replica_strategy()
    rng = np.random.default_rng(5)
    a = rng.normal(size=(8, 6)).astype(np.float32)
    b = rng.normal(size=(8, 6)).astype(np.float32)
    w0 = rng.normal(size=(6, 6)).astype(np.float32)

    w = tf.Variable(w0)
    with tf.GradientTape() as tape:
        single, _ = nt_xent(tf.constant(a) @ w, tf.constant(b) @ w, 0.5)
    g_single = tape.gradient(single, w).numpy()

    with strategy.scope():
        wd = tf.Variable(w0)

    def value_fn(ctx):
        r = ctx.replica_id_in_sync_group
        return tf.constant(a[r * 4 : (r + 1) * 4]), tf.constant(b[r * 4 : (r + 1) * 4])

    values = strategy.experimental_distribute_values_from_function(value_fn)

    @tf.function
    def grads(v):
        def fn(x, y):
            with tf.GradientTape() as tape:
                loss, _ = nt_xent(x @ wd, y @ wd, 0.5)
                loss = loss / 2.0  # 1/replicas, as the engine does
            return tape.gradient(loss, wd)

        return strategy.reduce("SUM", strategy.run(fn, args=v), axis=None)

    np.testing.assert_allclose(grads(values).numpy(), g_single, rtol=1e-4, atol=1e-6)
