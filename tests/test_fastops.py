"""MatmulConv1D and FusedBatchNormalization compute exactly what the stock Keras layers do.

Outputs, input gradients, weight gradients and BatchNorm moving statistics are compared
with ``keras.layers.Conv1D`` / ``keras.layers.BatchNormalization`` holding the same
weights, over every path of the fast layers (folded strides, single output step,
non-overlapping windows, 'same' and 'valid' stride-1 kernels) and the fallbacks.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from cpc_tf.models.fastops import FusedBatchNormalization, MatmulConv1D  # noqa: E402


def _output_and_grads(
    layer: keras.layers.Layer, x: tf.Tensor, **call_kw: object
) -> list[tf.Tensor]:
    """The layer's output and the gradients of a non-trivial loss w.r.t. input and weights."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, **call_kw)
        loss = tf.reduce_sum(tf.sin(tf.cast(y, tf.float32)) * tf.range(1.0, y.shape[-1] + 1.0))
    return [y] + tape.gradient(loss, [x] + layer.trainable_weights)


def _forward_and_grads(
    layer: keras.layers.Layer, x: tf.Tensor, **call_kw: object
) -> list[np.ndarray]:
    return [np.asarray(t, dtype=np.float32) for t in _output_and_grads(layer, x, **call_kw)]


def _assert_close(got: np.ndarray, want: np.ndarray, what: str = "", floor: float = 1e-6) -> None:
    """Equal up to float32 rounding of sums: tolerance relative to the tensor's largest entry."""
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale + floor, err_msg=what)


def _pair(stock: keras.layers.Layer, fast: keras.layers.Layer, shape: tuple[int, ...]) -> None:
    stock.build(shape)
    fast.build(shape)
    fast.set_weights(stock.get_weights())


# (length, in-channels, filters, kernel, stride, padding, batch): the path each case takes
WIDE = 128  # in × out channels ≥ 128 × 128 selects the matmul kernel gradient
CONV_CASES = [
    (
        116,
        32,
        WIDE,
        8,
        4,
        "valid",
        3,
    ),  # folded to 4·32 channels, width-2 conv, matmul gradient (seed 004)
    (116, 8, 5, 8, 4, "valid", 3),  # folded, narrow: stock gradient of the folded conv
    (13, 64, WIDE, 4, 2, "valid", 3),  # folded, matmul gradient, the unread last step dropped
    (5, 4, 5, 4, 2, "valid", 3),  # folded to a single output step: one matmul
    (588, 1, 6, 10, 5, "valid", 2),  # seed 004 first layer (mono input)
    (30, 1, 6, 3, 3, "valid", 2),  # kernel == stride (SampleCNN stem): one matmul
    (17, 2, 5, 6, 3, "valid", 3),  # folded, tail dropped
    (20, WIDE, WIDE, 3, 1, "same", 3),  # SampleCNN block: matmul kernel gradient
    (20, WIDE, WIDE, 3, 1, "same", 1),  # batch of one: no example boundaries
    (9, WIDE, WIDE, 4, 1, "same", 3),  # even kernel: asymmetric 'same' padding
    (9, WIDE, WIDE, 5, 1, "same", 2),
    (3, WIDE, WIDE, 3, 1, "same", 4),  # length equal to the kernel
    (12, WIDE, WIDE, 3, 1, "valid", 3),  # stride-1 'valid', matmul gradient
    (20, 11, 11, 3, 1, "same", 3),  # narrow channels (TUNe Tail+5): stock path
    (1, WIDE, WIDE, 3, 1, "same", 3),  # shorter than the kernel: stock path
    (10, 3, 5, 1, 1, "same", 3),  # 1x1: stock path
    (11, 3, 5, 3, 2, "same", 3),  # strided 'same': stock path
    (11, 3, 5, 5, 2, "valid", 3),  # kernel not a multiple of the stride: stock path
]


@pytest.mark.parametrize("length,cin,filters,kernel,stride,padding,batch", CONV_CASES)
def test_matmul_conv1d_matches_keras_conv1d(
    length: int, cin: int, filters: int, kernel: int, stride: int, padding: str, batch: int
) -> None:
    x = tf.constant(
        np.random.default_rng(length * 31 + kernel).normal(size=(batch, length, cin)), tf.float32
    )
    stock = keras.layers.Conv1D(filters, kernel, strides=stride, padding=padding)
    fast = MatmulConv1D(filters, kernel, strides=stride, padding=padding)
    _pair(stock, fast, x.shape)
    want, got = _forward_and_grads(stock, x), _forward_and_grads(fast, x)
    for name, w, g in zip(("output", "d input", "d kernel", "d bias"), want, got):
        assert g.shape == w.shape, name
        _assert_close(g, w, name)


def test_the_wide_cases_take_the_matmul_gradient() -> None:
    """The cases above only test the custom gradient if it is really selected."""
    import cpc_tf.models.fastops as fastops

    calls = []
    original = fastops.conv1d_matmul_grad
    fastops.conv1d_matmul_grad = lambda *a: calls.append(a) or original(*a)
    try:
        x = tf.zeros([2, 20, WIDE])
        MatmulConv1D(WIDE, 3, padding="same")(x)
        MatmulConv1D(WIDE, 8, strides=4)(tf.zeros([2, 116, 32]))
        assert len(calls) == 2
        MatmulConv1D(11, 3, padding="same")(tf.zeros([2, 20, 11]))
        assert len(calls) == 2
    finally:
        fastops.conv1d_matmul_grad = original


def test_matmul_conv1d_same_gradient_inside_tf_function_with_unknown_batch() -> None:
    stock = keras.layers.Conv1D(WIDE, 3, padding="same")
    fast = MatmulConv1D(WIDE, 3, padding="same")
    _pair(stock, fast, (None, 40, WIDE))
    x = tf.constant(np.random.default_rng(1).normal(size=(5, 40, WIDE)), tf.float32)
    spec = tf.TensorSpec([None, 40, WIDE], tf.float32)
    fast_fn = tf.function(lambda t: _output_and_grads(fast, t), input_signature=[spec])
    for w, g in zip(_forward_and_grads(stock, x), fast_fn(x)):
        _assert_close(np.asarray(g), np.asarray(w))


def test_matmul_conv1d_keeps_the_stock_variables_and_config() -> None:
    stock = keras.layers.Conv1D(7, 8, strides=4, name="conv")
    fast = MatmulConv1D(7, 8, strides=4, name="conv")
    _pair(stock, fast, (None, 116, 3))
    assert [(v.path, tuple(v.shape)) for v in fast.weights] == [
        (v.path, tuple(v.shape)) for v in stock.weights
    ]
    clone = MatmulConv1D.from_config(fast.get_config())
    assert isinstance(clone, MatmulConv1D) and clone.get_config() == fast.get_config()


def test_matmul_conv1d_under_bfloat16_policy() -> None:
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 116, WIDE)), tf.float32)
    for padding, stride, kernel in (("valid", 4, 8), ("same", 1, 3)):
        fast = MatmulConv1D(WIDE, kernel, strides=stride, padding=padding, dtype="mixed_bfloat16")
        stock = keras.layers.Conv1D(WIDE, kernel, strides=stride, padding=padding)
        _pair(stock, fast, x.shape)
        with tf.GradientTape() as tape:
            y = fast(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        grads = tape.gradient(loss, fast.trainable_weights)
        assert y.dtype == tf.bfloat16
        assert [g.dtype for g in grads] == [tf.float32, tf.float32]
        np.testing.assert_allclose(
            np.asarray(tf.cast(y, tf.float32)), np.asarray(stock(x)), rtol=0.05, atol=0.05
        )


@pytest.mark.parametrize(
    "shape",
    [
        (6, 8),
        (4, 9, 8),
        (3, 5, 4, 8),  # fused kernel
        (6, 7),
        (4, 9, 7),
    ],
)  # channels not a multiple of 4: two-pass
def test_fused_batch_norm_matches_keras_in_training(shape: tuple[int, ...]) -> None:
    x = tf.constant(np.random.default_rng(len(shape)).normal(2.0, 3.0, size=shape), tf.float32)
    stock = keras.layers.BatchNormalization(momentum=0.8)
    fast = FusedBatchNormalization(momentum=0.8)
    _pair(stock, fast, x.shape)
    for _ in range(2):  # two updates of the moving statistics
        want, got = (
            _forward_and_grads(stock, x, training=True),
            _forward_and_grads(fast, x, training=True),
        )
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-5)
    for w, g in zip(
        stock.get_weights(), fast.get_weights()
    ):  # gamma, beta, moving mean, moving variance
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # The moving variance holds the biased batch variance (Keras' convention, not Bessel-corrected).
    batch_var = np.var(np.asarray(x).reshape(-1, shape[-1]), axis=0)
    np.testing.assert_allclose(fast.moving_variance.numpy(), 0.64 + 0.36 * batch_var, rtol=1e-4)
    inference = fast(x, training=False)
    np.testing.assert_allclose(
        np.asarray(inference), np.asarray(stock(x, training=False)), rtol=1e-5, atol=1e-5
    )


def test_fused_batch_norm_under_bfloat16_keeps_float32_statistics() -> None:
    x = tf.constant(np.random.default_rng(3).normal(size=(4, 10, 3)), tf.float32)
    layer = FusedBatchNormalization(dtype="mixed_bfloat16")
    y = layer(x, training=True)
    assert y.dtype == tf.bfloat16
    assert layer.moving_mean.dtype == "float32"
    np.testing.assert_allclose(
        np.asarray(tf.reduce_mean(tf.cast(y, tf.float32), axis=(0, 1))), 0.0, atol=0.02
    )


def _two_replica_bn(x: np.ndarray) -> tuple[FusedBatchNormalization, np.ndarray]:
    """Run a synchronized FusedBatchNormalization on 2 replicas (half of `x` each)."""
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs the two logical CPUs of tests/conftest.py")
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in devices[:2]], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    with strategy.scope():
        layer = FusedBatchNormalization(synchronized=True, momentum=0.0)
        layer.build((None,) + x.shape[1:])
    dist = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(x).batch(len(x))
    )
    out = strategy.run(tf.function(lambda b: layer(b, training=True)), args=(next(iter(dist)),))
    return layer, np.concatenate([np.asarray(t) for t in strategy.experimental_local_results(out)])


def test_fused_batch_norm_synchronized_across_two_replicas_uses_global_statistics() -> None:
    x = np.concatenate([np.zeros((2, 3, 2)), np.full((2, 3, 2), 4.0)]).astype(
        np.float32
    )  # replica means 0 and 4
    layer, y = _two_replica_bn(x)
    np.testing.assert_allclose(
        layer.moving_mean.numpy(), [2.0, 2.0], atol=1e-5
    )  # global mean, not 0 or 4
    np.testing.assert_allclose(layer.moving_variance.numpy(), [4.0, 4.0], atol=1e-4)
    np.testing.assert_allclose(y, (x - 2.0) / np.sqrt(4.0 + 1e-3), atol=1e-5)


def test_synchronized_statistics_are_as_accurate_as_one_replica() -> None:
    """Mean 30, unit spread: Keras' E[x²]−E[x]² loses ~1e-3; the two-pass sync path must not."""
    x = np.random.default_rng(4).normal(30.0, 1.0, size=(8, 500, 4)).astype(np.float32)
    _, y = _two_replica_bn(x)
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(axis=(0, 1))) / np.sqrt(x64.var(axis=(0, 1)) + 1e-3)
    assert np.max(np.abs(y - want)) < 1e-4
    single = FusedBatchNormalization()
    np.testing.assert_allclose(y, np.asarray(single(tf.constant(x), training=True)), atol=1e-4)


@pytest.mark.parametrize("channels,fused", [(8, True), (128, True), (7, False), (11, False)])
def test_fused_kernel_is_used_for_channel_counts_it_handles_well(
    channels: int, fused: bool
) -> None:
    layer = FusedBatchNormalization()
    layer.build((None, 10, channels))
    graph = (
        tf.function(lambda t: layer(t, training=True))
        .get_concrete_function(tf.TensorSpec([None, 10, channels], tf.float32))
        .graph
    )
    ops = {op.type for op in graph.get_operations()}
    assert ("FusedBatchNormV3" in ops) == fused, sorted(ops)


def test_fast_layers_compile_with_xla() -> None:
    """train.jit_compile=true XLA-compiles the step: the custom gradients and the fused kernel must
    compile.
    """
    x = tf.constant(np.random.default_rng(5).normal(size=(3, 116, 32)), tf.float32)
    conv = MatmulConv1D(WIDE, 8, strides=4)  # folded, matmul kernel gradient
    same = MatmulConv1D(WIDE, 3, padding="same")
    bn = FusedBatchNormalization()

    def step(t: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = same(bn(conv(t), training=True))
            loss = tf.reduce_sum(tf.sin(y))
        return [loss] + tape.gradient(
            loss, [t] + conv.trainable_weights + same.trainable_weights + bn.trainable_weights
        )

    step(x)  # build the layers outside the compiled function
    want = [np.asarray(v) for v in tf.function(step)(x)]
    got = [np.asarray(v) for v in tf.function(step, jit_compile=True)(x)]
    # The bias of the conv that feeds BatchNorm has a gradient that is zero up to rounding (~1e-5).
    for w, g in zip(want, got):
        _assert_close(g, w, floor=2e-4)
