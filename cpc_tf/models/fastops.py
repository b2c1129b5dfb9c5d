"""Conv1D and BatchNormalization: Keras' layers with faster (and more accurate) training.

Training the raw-audio encoders is dominated by a few convolutions over long sequences
(Bajorath et al. 2021, Table 1; SampleCNN's first blocks, Spijkervet & Burgoyne 2021, §3.3).
Profiling the training step on CPU showed where TensorFlow's stock kernels lose time, and
each layer here moves that arithmetic onto faster kernels without changing what is computed:

* :class:`MatmulConv1D` – a ``keras.layers.Conv1D`` whose kernel gradient is a few
  large matrix products instead of ``Conv2DBackpropFilter`` (2.8× faster for SampleCNN's
  first block), and whose strided 'valid' convolutions are folded into stride-1 ones.
* :class:`FusedBatchNormalization` – a ``keras.layers.BatchNormalization`` that trains
  with TensorFlow's fused kernel (one pass forward and one backward, where Keras 3
  makes several) and synchronizes statistics across replicas without Keras'
  cancellation-prone E[x²] − E[x]².

Both keep the stock layers' variables (names, shapes, counts), so checkpoints and
``.keras`` files are interchangeable with models built from the stock layers. Cases
they do not speed up (and BatchNorm inference) run the stock computation.
``benchmarks/bench_cpc_step.py`` and ``benchmarks/bench_simclr_step.py`` measure the
effect on whole training steps.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def _kernel_grad_valid(x: tf.Tensor, dy: tf.Tensor, width: int) -> tf.Tensor:
    """``dk[a] = Σ_{n,t} x[n, t+a]ᵀ dy[n, t]`` for a stride-1 'valid' convolution."""
    channels, filters = x.shape[-1], dy.shape[-1]
    steps = tf.shape(dy)[1]
    dy2 = tf.reshape(dy, [-1, filters])
    return tf.stack(
        [
            tf.matmul(tf.reshape(x[:, a : a + steps], [-1, channels]), dy2, transpose_a=True)
            for a in range(width)
        ]
    )


def _kernel_grad_same(x: tf.Tensor, dy: tf.Tensor, width: int) -> tf.Tensor:
    """``dk[a] = Σ_{n,t} x[n, t+d_a]ᵀ dy[n, t]`` for a stride-1 'same' convolution.

    Input and output have the same length L, so on the flattened ``[N·L, C]`` views tap
    a is a single product of two row ranges shifted by d_a (no copies). Where the shift
    crosses from one example into the next, the flat product picks up |d_a| spurious
    pairs per example boundary; a small second product removes them.
    """
    channels, filters = x.shape[-1], dy.shape[-1]
    length = x.shape[1]
    xf = tf.reshape(x, [-1, channels])
    df = tf.reshape(dy, [-1, filters])
    rows = tf.shape(xf)[0]

    def product(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return tf.matmul(
            tf.reshape(a, [-1, channels]), tf.reshape(b, [-1, filters]), transpose_a=True
        )

    taps = []
    for d in range(-((width - 1) // 2), width - (width - 1) // 2):  # output t reads input t + d
        if d > 0:  # x[n, t+d] · dy[n, t]; the flat view also pairs x[n+1, j] with dy[n, L-d+j]
            g = product(xf[d:], df[: rows - d]) - product(x[1:, :d], dy[:-1, length - d :])
        elif d < 0:  # x[n, t-e] · dy[n, t]; the flat view also pairs x[n-1, L-e+j] with dy[n, j]
            e = -d
            g = product(xf[: rows - e], df[e:]) - product(x[:-1, length - e :], dy[1:, :e])
        else:
            g = product(xf, df)
        taps.append(g)
    return tf.stack(taps)


def conv1d_matmul_grad(x: tf.Tensor, kernel: tf.Tensor, padding: str) -> tf.Tensor:
    """Stride-1 convolution ``[N, L, C] * [k, C, F]`` ('VALID' or 'SAME') with a matmul kernel
    gradient.

    The forward pass and the input gradient are the framework's convolutions (oneDNN or
    cuDNN); the kernel gradient is k matrix products over the flattened batch, which
    run near the machine's matmul speed where ``Conv2DBackpropFilter`` does not.
    'SAME' requires a static length L ≥ k (checked by the caller).
    """
    width = int(kernel.shape[0])
    kernel_grad = _kernel_grad_same if padding == "SAME" else _kernel_grad_valid

    @tf.custom_gradient
    def conv(x: tf.Tensor, kernel: tf.Tensor) -> tuple[tf.Tensor, Any]:
        y = tf.nn.conv1d(x, kernel, 1, padding)

        def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            dx = tf.nn.conv1d_transpose(dy, kernel, tf.shape(x), 1, padding)
            return dx, kernel_grad(x, dy, width)

        return y, grad

    return conv(x, kernel)


# Below this many in × out channels oneDNN's own kernel gradient is faster than the
# products. Measured on 2 CPU cores for 'same' kernels of width 3: from 11×11 to 88×88
# channels the products took 30-70% longer; at 128×128 they took 35-65% less time.
MATMUL_GRAD_MIN_CHANNELS = 128 * 128


def conv1d_stride1(x: tf.Tensor, kernel: tf.Tensor, padding: str) -> tf.Tensor:
    """Stride-1 convolution, with the matmul kernel gradient where the channels are wide enough."""
    if int(kernel.shape[1]) * int(kernel.shape[2]) >= MATMUL_GRAD_MIN_CHANNELS:
        return conv1d_matmul_grad(x, kernel, padding)
    return tf.nn.conv1d(x, kernel, 1, padding)


@keras.saving.register_keras_serializable(package="cpc_tf")
class MatmulConv1D(keras.layers.Conv1D):
    """``keras.layers.Conv1D`` that trains faster on long sequences; same variables, same results.

    * **Stride 1, 'same' or 'valid'** (SampleCNN and TUNe blocks): forward and input
      gradient are the stock convolutions; with at least 128×128 channels the kernel
      gradient is k large matrix products (:func:`conv1d_matmul_grad`).
    * **Stride s > 1, 'valid', kernel k a multiple of s** (Bajorath et al. 2021, Table 1: strides
      5,4,2,2,2 with kernels 10,8,4,4,4; SampleCNN's stem, k = s = 3): every s steps are
      folded into the channel axis (``[N, L, C] → [N, L/s, s·C]``, a free reshape), which
      makes it a stride-1 'valid' convolution of width k/s with the reshaped kernel
      ``[k/s, s·C, F]``; width 1, or a single output step, is one matrix product.

    Any other configuration (dilation, groups, causal padding, a kernel that is not a
    multiple of its stride, an unknown length with 'same' padding) is the stock layer.
    """

    def _plain(self) -> bool:
        return (
            self.data_format != "channels_last"
            or self.dilation_rate[0] != 1
            or self.groups != 1
            or self.padding not in ("valid", "same")
        )

    def call(self, inputs: Any) -> Any:
        k, s = self.kernel_size[0], self.strides[0]
        length = inputs.shape[1]
        if self._plain():
            return super().call(inputs)
        if s == 1:
            if k == 1 or (self.padding == "same" and (length is None or length < k)):
                return super().call(inputs)
            outputs = conv1d_stride1(
                inputs, tf.convert_to_tensor(self.kernel), self.padding.upper()
            )
        elif self.padding == "valid" and k % s == 0:
            outputs = self._folded(inputs, k, s)
        else:
            return super().call(inputs)
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.convert_to_tensor(self.bias))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _folded(self, inputs: tf.Tensor, k: int, s: int) -> tf.Tensor:
        channels, filters = self.kernel.shape[1], self.filters
        kernel = tf.convert_to_tensor(self.kernel)  # autocast to the compute dtype
        length = inputs.shape[1] if inputs.shape[1] is not None else tf.shape(inputs)[1]
        out_steps = (length - k) // s + 1
        used = (out_steps - 1) * s + k  # the tail a strided 'valid' convolution never reads
        x = inputs if isinstance(used, int) and used == length else inputs[:, :used]
        if k == s or (
            isinstance(out_steps, int) and out_steps == 1
        ):  # disjoint windows: one product
            y = tf.matmul(
                tf.reshape(x, [-1, k * channels]), tf.reshape(kernel, [k * channels, filters])
            )
            return tf.reshape(y, [-1, out_steps, filters])
        x = tf.reshape(x, [-1, used // s, s * channels])
        return conv1d_stride1(x, tf.reshape(kernel, [k // s, s * channels, filters]), "VALID")


@keras.saving.register_keras_serializable(package="cpc_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with faster and more accurate training statistics.

    * **One replica, or per-replica statistics, channels a multiple of 4:** Keras 3
      normalises with separate moment, subtract, multiply and add ops, each a pass over
      the activations (and as many again in the gradient). This layer calls
      ``FusedBatchNormV3`` instead: one pass forward, one backward (oneDNN on CPU, cuDNN
      on GPU); 3× faster on SampleCNN's [32, 19683, 128] activations. oneDNN's kernel is
      slower than the separate ops on channel counts that are not a multiple of 4 (TUNe
      Tail+5 starts with 11), so those take the two-pass path below without the
      all-reduce.
    * **Statistics synchronized across replicas** (``synchronized=True`` under a
      strategy with more than one replica): Keras all-reduces Σx and Σx² and takes
      E[x²] − E[x]², which cancels catastrophically when the mean is large next to the
      spread (on activations with mean 30 and unit variance its outputs are off by
      1e-3, 40× more than the local path). Here the global mean is all-reduced first and
      then Σ(x − mean)²: two passes, as accurate as the single-replica kernel, at the
      price of one more (small, per-channel) all-reduce.

    Inference, masks, renorm, an axis other than the last and a missing scale or centre
    use the stock layer. The moving statistics follow Keras exactly:
    ``moving = m·moving + (1−m)·batch`` with the *biased* batch variance. Inputs are
    normalised in float32, as Keras does, so the layer is safe under mixed precision.
    """

    def _custom_training(self, inputs: Any, training: Any, mask: Any) -> bool:
        if not (training and self.trainable) or mask is not None or self.renorm:
            return False
        rank = len(inputs.shape)
        return rank in (2, 3, 4) and self.axis in (-1, rank - 1) and self.scale and self.center

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if not self._custom_training(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32)
        ctx = tf.distribute.get_replica_context()
        synchronized = self.synchronized and ctx is not None and ctx.num_replicas_in_sync > 1
        if synchronized or x.shape[-1] % 4:
            y, mean, variance = self._two_pass(x, ctx if synchronized else None)
        else:
            y, mean, variance = self._fused(x)
        m = self.momentum
        self.moving_mean.assign(
            self.moving_mean * m + tf.cast(mean, self.moving_mean.dtype) * (1.0 - m)
        )
        self.moving_variance.assign(
            self.moving_variance * m + tf.cast(variance, self.moving_variance.dtype) * (1.0 - m)
        )
        return tf.cast(y, self.compute_dtype)

    def _fused(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Normalise with local batch statistics in one fused kernel; (y, mean, biased variance)."""
        shape = tf.shape(x)
        channels = x.shape[-1]
        if len(x.shape) == 2:  # [N, C] → [N, 1, 1, C]
            x4 = tf.reshape(x, [-1, 1, 1, channels])
        elif len(x.shape) == 3:  # [N, L, C] → [N, L, 1, C]
            x4 = tf.expand_dims(x, 2)
        else:
            x4 = x
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x4,
            tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        count = tf.cast(tf.size(x) // channels, tf.float32)
        variance = (
            variance * (count - 1.0) / tf.maximum(count, 1.0)
        )  # the kernel's Bessel correction undone
        return tf.reshape(y, shape), mean, variance

    def _two_pass(
        self, x: tf.Tensor, ctx: tf.distribute.ReplicaContext | None
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Mean, then mean squared deviation, summed over replicas when ``ctx`` is given."""

        def total(v: tf.Tensor) -> tf.Tensor:
            return v if ctx is None else ctx.all_reduce(tf.distribute.ReduceOp.SUM, v)

        axes = list(range(len(x.shape) - 1))
        count = tf.maximum(total(tf.cast(tf.size(x) // x.shape[-1], tf.float32)), 1.0)
        mean = total(tf.reduce_sum(x, axes)) / count
        variance = total(tf.reduce_sum(tf.square(x - mean), axes)) / count
        y = tf.nn.batch_normalization(
            x,
            mean,
            variance,
            tf.cast(self.beta, tf.float32),
            tf.cast(self.gamma, tf.float32),
            self.epsilon,
        )
        return y, mean, variance
