"""TUNe and TUNe+: the tailed U-Net encoder (Vélez Vásquez & Burgoyne 2022, §3, Table 1).

Every block is Conv1D(kernel 3, stride 1, same) + BatchNorm + ReLU with He
initialisation (Vélez Vásquez & Burgoyne 2022, §3.1 and §4.1). With ``F`` initial filters:

* **Contractive path** (§3.1): ``n_con`` blocks with F, 2F, 4F, … channels, each
  output kept for a skip connection and then max-pooled (size 3, stride 3). A further
  block at the bottom of the U doubles once more (16F for ``n_con`` = 4): it is the
  "bottleneck" that the first transposed convolution upsamples.
* **Expansive path** (§3.2): ``n_exp`` levels, each a transposed Conv1D (kernel 3,
  stride 3, no padding; channels 2:1) whose output is concatenated with the skip of the
  same resolution and merged by a block (channels 2:1 again).
* **Tail** (§3.3): ``n_tail`` levels, each a max-pool then a block; the channels double
  per level while the doubled width stays within ``rep_dim``, otherwise they stay, and
  the last block outputs ``rep_dim``. Global average pooling over what is left of the
  time axis gives the representation ``[B, rep_dim]``.
* **TUNe+** (``plus=True``, §3.3 and Figure 1's pink arrows): tail level t (for
  t ≤ n_exp) also concatenates the expansive-path output of its resolution (the
  bottleneck for the deepest one): the 3:2 input/output ratio of the paper.

With ``n_exp = 0`` the network is a plain chain of conv blocks and pools, i.e. a
SampleCNN-like encoder (Vélez Vásquez & Burgoyne 2022 abstract and end of §3: with no expansive
layers TUNe reduces to CLMR's encoder). The time axis shrinks by 3 per
pool, so the input needs ``3 ** max(n_con, n_con - n_exp + n_tail)`` samples at least
(59,049 = 3^10 in the paper, §4.1).

This is the layout of the authors' published code, generalised to any depth. Parameter
counts measured with this implementation on 59,049 samples, rep_dim 512 (trainable /
Keras total with BN moving statistics), against Vélez Vásquez & Burgoyne 2022, Table 1:

===========================  ==========  ==========  =====  ======
preset (n_con/exp/tail, F)   trainable   total       paper  diff
===========================  ==========  ==========  =====  ======
Vanilla (4/4/4, 34)          2,340,396   2,345,500   2.4M   -2.5%
Tail+5 (4/4/9, 11)           2,096,970   2,102,482   2.1M   -0.1%
TUNe+ (4/4/9, 11, plus)      2,220,390   2,225,902   2.2M   +0.9%
===========================  ==========  ==========  =====  ======

(The paper counts PyTorch parameters, i.e. the trainable column; its classifier layer
is not part of the encoder.) Two other rows of Table 1 do not follow one rule with
these: the authors' "TUNe+ Large" (7.4M) caps its tail at 512 channels instead of
holding its width (this schedule gives 4.2M for F=34), and "Smaller Rep" (1.4M) is
0.88M here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras

from cpc_tf.models.layers import ConvBlock, PadToMatch, Shape, build_chain


@dataclass
class TUNePlan:
    """Channel widths of every TUNe stage, derived from the constructor arguments."""

    down: list[int] = field(default_factory=list)  # contractive blocks (kept as skips)
    bottleneck: int = 0  # block at the bottom of the U
    up: list[int] = field(default_factory=list)  # expansive levels (transposed conv = block width)
    tail: list[int] = field(default_factory=list)  # tail block outputs
    tail_extra: list[int] = field(default_factory=list)  # TUNe+ extra input channels per tail level

    @property
    def min_samples(self) -> int:
        """Shortest input that leaves at least one step everywhere."""
        n_con, n_exp, n_tail = len(self.down), len(self.up), len(self.tail)
        return 3 ** max(n_con, n_con - n_exp + n_tail)


def tune_plan(
    n_con: int, n_exp: int, n_tail: int, filters: int, rep_dim: int, plus: bool
) -> TUNePlan:
    """The channel schedule of TUNe (Vélez Vásquez & Burgoyne 2022, §3; widths as in the authors'
    code).

    Contractive block i has ``filters * 2**i`` channels, the bottleneck ``filters *
    2**n_con``; expansive level j (from the bottom) has the width of the skip it meets;
    the tail doubles from the width where the U ends while the result stays
    ``<= rep_dim``, then holds, and its last block outputs ``rep_dim``.
    """
    # Guards a programming error (a TUNe layer built directly with impossible sizes); users'
    # settings are checked, with the key names, by config validation and registry.check_fits.
    if n_con < 1 or n_exp < 0 or n_tail < 1 or n_exp > n_con or filters < 1 or rep_dim < 1:
        raise ValueError(
            f"invalid TUNe shape n_con={n_con}, n_exp={n_exp}, n_tail={n_tail}, "
            f"filters={filters}, rep_dim={rep_dim} (need n_con >= 1, n_tail >= 1, "
            "0 <= n_exp <= n_con)"
        )
    plan = TUNePlan()
    plan.down = [filters * 2**i for i in range(n_con)]
    plan.bottleneck = filters * 2**n_con
    plan.up = [plan.down[n_con - 1 - j] for j in range(n_exp)]
    width = plan.up[-1] if plan.up else plan.bottleneck
    start = n_con - n_exp  # resolution (number of /3) where the tail starts
    for t in range(1, n_tail + 1):
        resolution = start + t
        extra = 0
        if plus and resolution <= n_con and t <= n_exp:
            extra = plan.bottleneck if resolution == n_con else plan.up[n_con - 1 - resolution]
        plan.tail_extra.append(extra)
        if t == n_tail:
            width = rep_dim
        elif 2 * width <= rep_dim:
            width = 2 * width
        plan.tail.append(width)
    return plan


@keras.saving.register_keras_serializable(package="cpc_tf")
class TUNe(keras.layers.Layer):
    """Tailed U-Net encoder: waveform ``[B, n]`` → representation ``[B, rep_dim]``.

    Args:
        n_con: contractive blocks N_con (Vélez Vásquez & Burgoyne 2022, §3.1; default 4).
        n_exp: expansive levels N_exp, at most ``n_con`` (§3.2; default 4; 0 = no U).
        n_tail: tail levels N_tail, at least 1 (§3.3; Vanilla 4, Tail+5 9).
        filters: initial filters F (Table 1: Vanilla 34, Tail+5 and TUNe+ 11).
        rep_dim: representation size R (512).
        plus: TUNe+ connections from the expansive path into the tail.
        synchronized_bn: cross-replica BatchNorm.
    """

    def __init__(
        self,
        n_con: int = 4,
        n_exp: int = 4,
        n_tail: int = 4,
        filters: int = 34,
        rep_dim: int = 512,
        plus: bool = False,
        synchronized_bn: bool = False,
        bn_momentum: float = 0.9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.n_con, self.n_exp, self.n_tail = int(n_con), int(n_exp), int(n_tail)
        self.filters, self.rep_dim = int(filters), int(rep_dim)
        self.plus, self.synchronized_bn = bool(plus), bool(synchronized_bn)
        self.bn_momentum = float(bn_momentum)
        self.plan = tune_plan(
            self.n_con, self.n_exp, self.n_tail, self.filters, self.rep_dim, self.plus
        )
        dt = self.dtype_policy

        def block(width: int, name: str) -> ConvBlock:
            return ConvBlock(
                width,
                3,
                strides=1,
                padding="same",
                batch_norm=True,
                synchronized=self.synchronized_bn,
                bn_momentum=self.bn_momentum,
                activation="relu",
                kernel_initializer="he_uniform",
                dtype=dt,
                name=name,
            )

        def pool(name: str) -> keras.layers.Layer:
            return keras.layers.MaxPooling1D(3, strides=3, dtype=dt, name=name)

        self.down_blocks = [block(w, f"down_{i}") for i, w in enumerate(self.plan.down)]
        self.down_pools = [pool(f"down_pool_{i}") for i in range(self.n_con)]
        self.bottleneck = block(self.plan.bottleneck, "bottleneck")
        self.up_convs = [
            keras.layers.Conv1DTranspose(
                w,
                3,
                strides=3,
                padding="valid",
                kernel_initializer="he_uniform",
                dtype=dt,
                name=f"up_conv_{j}",
            )
            for j, w in enumerate(self.plan.up)
        ]
        self.up_pads = [PadToMatch(dtype=dt, name=f"up_pad_{j}") for j in range(self.n_exp)]
        self.up_concats = [
            keras.layers.Concatenate(axis=-1, dtype=dt, name=f"up_concat_{j}")
            for j in range(self.n_exp)
        ]
        self.up_blocks = [block(w, f"up_{j}") for j, w in enumerate(self.plan.up)]
        self.tail_pools = [pool(f"tail_pool_{t}") for t in range(self.n_tail)]
        self.tail_concats = [
            keras.layers.Concatenate(axis=-1, dtype=dt, name=f"tail_concat_{t}") if extra else None
            for t, extra in enumerate(self.plan.tail_extra)
        ]
        self.tail_blocks = [block(w, f"tail_{t}") for t, w in enumerate(self.plan.tail)]
        self.global_pool = keras.layers.GlobalAveragePooling1D(dtype=dt, name="global_pool")

    # ------------------------------------------------------------------ structure
    def describe(self) -> list[str]:
        """The operations in execution order, e.g. ``['block 34', 'pool', …, 'gap']``.

        'block W' is a conv block of width W, 'pool' a max-pool, 'up W' a transposed
        convolution, 'concat' a skip concatenation and 'gap' the global average pool.
        """
        ops_: list[str] = []
        for w in self.plan.down:
            ops_ += [f"block {w}", "pool"]
        ops_.append(f"block {self.plan.bottleneck}")
        for w in self.plan.up:
            ops_ += [f"up {w}", "concat", f"block {w}"]
        for w, extra in zip(self.plan.tail, self.plan.tail_extra):
            ops_ += ["pool"] + (["concat"] if extra else []) + [f"block {w}"]
        ops_.append("gap")
        return ops_

    @property
    def min_samples(self) -> int:
        """Shortest input this TUNe accepts."""
        return self.plan.min_samples

    # ------------------------------------------------------------------ Keras
    def build(self, input_shape: Shape) -> None:
        n = input_shape[-1]
        if n is not None and int(n) < self.min_samples:
            raise ValueError(
                f"TUNe {self.n_con}/{self.n_exp}/{self.n_tail} needs at least "
                f"{self.min_samples} samples, got {n}"
            )
        shape = tuple(input_shape) + (1,)
        skips: list[Shape] = []
        for blk, pl in zip(self.down_blocks, self.down_pools):
            shape = build_chain([blk], shape)
            skips.append(shape)
            shape = build_chain([pl], shape)
        shape = build_chain([self.bottleneck], shape)
        u_shapes = [shape]  # U features by depth, deepest first
        for j in range(self.n_exp):
            skip = skips[self.n_con - 1 - j]
            up = build_chain([self.up_convs[j]], shape)
            up = self.up_pads[j].compute_output_shape([up, skip])
            self.up_pads[j].build([up, skip])
            self.up_concats[j].build([up, skip])
            merged = self.up_concats[j].compute_output_shape([up, skip])
            shape = build_chain([self.up_blocks[j]], merged)
            u_shapes.append(shape)
        for t in range(self.n_tail):
            shape = build_chain([self.tail_pools[t]], shape)
            concat = self.tail_concats[t]
            if concat is not None:
                other = u_shapes[self.n_exp - 1 - t]
                concat.build([shape, other])
                shape = concat.compute_output_shape([shape, other])
            shape = build_chain([self.tail_blocks[t]], shape)
        self.global_pool.build(shape)
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.global_pool(self.feature_map(x, training))

    def feature_map(self, x: Any, training: bool | None = None) -> Any:
        """The tail's output before the global average pool, ``[B, steps, rep_dim]``."""
        x = keras.ops.expand_dims(x, -1)
        skips = []
        for blk, pl in zip(self.down_blocks, self.down_pools):
            x = blk(x, training=training)
            skips.append(x)
            x = pl(x)
        x = self.bottleneck(x, training=training)
        u_feats = [x]
        for j in range(self.n_exp):
            skip = skips[self.n_con - 1 - j]
            up = self.up_pads[j]([self.up_convs[j](x), skip])
            x = self.up_blocks[j](self.up_concats[j]([up, skip]), training=training)
            u_feats.append(x)
        for t in range(self.n_tail):
            x = self.tail_pools[t](x)
            concat = self.tail_concats[t]
            if concat is not None:
                x = concat([x, u_feats[self.n_exp - 1 - t]])
            x = self.tail_blocks[t](x, training=training)
        return x

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.rep_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "n_con": self.n_con,
                "n_exp": self.n_exp,
                "n_tail": self.n_tail,
                "filters": self.filters,
                "rep_dim": self.rep_dim,
                "plus": self.plus,
                "synchronized_bn": self.synchronized_bn,
                "bn_momentum": self.bn_momentum,
            }
        )
        return config
