"""The architecture sub-sections of ``model``: one dataclass per encoder and autoregressor.

Their defaults are the numbers of the papers each encoder comes from (cited per field); the
:class:`~cpc_tf.config.schema.ModelConfig` holds one of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cpc_tf.config.spec import _f


@dataclass
class Conv1DEncoderConfig:
    """Seed 004 Table 1: five strided Conv1D + BN + LeakyReLU, then two dense layers."""

    strides: list[int] = _f([5, 4, 2, 2, 2])
    kernels: list[int] = _f([10, 8, 4, 4, 4])
    filters: int = _f(512, min=1)
    hidden_units: int = _f(512, min=1)
    dropout: float = _f(0.1, min=0.0, max=0.99)
    norm: Literal["batch", "channel", "layer", "none"] = _f(
        "batch",
        help="after each conv: batch (the seed's BatchNorm), channel (per time step over "
        "the channels, CPC_audio's channel norm), layer (per window over time and "
        "channels) or none. Only batch shares statistics between windows and clips",
    )


@dataclass
class Mel2DEncoderConfig:
    """Seed 004 Table 2 and §2.2.1: log-mel patches (n_fft 2048, 64 bands) into a 2D CNN."""

    n_fft: int = _f(2048, min=16)
    n_mels: int = _f(64, min=4)
    frames: int = _f(64, min=4, help="time frames per window; hop = window samples / frames")
    fmin: float = _f(0.0, min=0.0)
    fmax: float = _f(0.0, min=0.0, help="0 = Nyquist")
    filters: list[int] = _f([32, 64, 256, 512])
    kernel: int = _f(3, min=1)
    stride: int = _f(2, min=1)
    hidden_units: int = _f(512, min=1)
    dropout: float = _f(0.1, min=0.0, max=0.99)


@dataclass
class FrameEncoderConfig:
    """CLMR's CPC encoder over the whole waveform (Spijkervet & Burgoyne 2021, §3.5): 7 Conv1D, 512
    filters.
    """

    strides: list[int] = _f([5, 3, 2, 2, 2, 2, 2])
    kernels: list[int] = _f([10, 6, 4, 4, 4, 2, 2])
    filters: int = _f(512, min=1)
    paddings: list[int] = _f(
        [2, 2, 2, 2, 1, 1, 1], min=0, help="zeros added on each side before each conv (CLMR's code)"
    )
    norm: Literal["batch", "channel", "layer", "none"] = _f(
        "none", help="after each conv, as model.conv1d.norm (CLMR's code: none, ReLU only)"
    )
    dim: int = _f(
        0, min=0, help="a linear map of each frame to this size (0 = the raw conv output)"
    )


@dataclass
class MelConvConfig:
    """Log-mel frames through Conv2D blocks (BYOL-A's encoder, Niizumi et al. 2021 §3.4).

    The model takes raw audio and computes the log-mel itself (25 ms / 10 ms frames at
    16 kHz by default). CPC sees the frame sequence; SimCLR pools it over time.
    """

    n_fft: int = _f(400, min=16, help="FFT window in samples (400 = 25 ms at 16 kHz)")
    hop: int = _f(160, min=1, help="samples between frames (160 = 10 ms at 16 kHz)")
    n_mels: int = _f(64, min=4)
    fmin: float = _f(0.0, min=0.0)
    fmax: float = _f(0.0, min=0.0, help="0 = Nyquist")
    filters: list[int] = _f([64, 64, 64], min=1, help="channels of each Conv2D block")
    time_pools: list[int] = _f(
        [1, 2, 1],
        min=1,
        help="max-pool over time after each block; the product is the code hop "
        "in frames (2 = 20 ms codes)",
    )
    freq_pool: int = _f(2, min=1, help="max-pool over frequency after each block")
    dims: list[int] = _f(
        [256], min=1, help="per-frame dense layers; the last size is the code size"
    )
    norm: Literal["batch", "channel", "none"] = _f(
        "channel", help="after each conv: batch or channel (each frame over its own features)"
    )
    input_norm: Literal["example", "batch", "none"] = _f(
        "example", help="example: standardise each clip's log-mel; batch: BatchNorm over the bands"
    )
    pooling: Literal["mean", "mean_max"] = _f(
        "mean_max", help="SimCLR only: pooling over time into h"
    )
    dropout: float = _f(0.0, min=0.0, max=0.99, help="dropout before each dense layer")


@dataclass
class SampleCNNConfig:
    """SampleCNN (Spijkervet & Burgoyne 2021, §3.3, Won, Spijkervet & Choi 2021, §15.2): 59049
    samples -> h in R^512.
    """

    channels: list[int] = _f([128, 128, 256, 256, 256, 256, 256, 256, 512])
    stem_filters: int = _f(128, min=1)
    out_filters: int = _f(512, min=1)


@dataclass
class TUNeConfig:
    """Tailed U-Net (Vélez Vásquez & Burgoyne 2022, §3, Table 1)."""

    n_con: int = _f(4, min=1)
    n_exp: int = _f(4, min=0)
    n_tail: int = _f(4, min=0)
    filters: int = _f(34, min=1, help="initial filters (Vanilla TUNe: 34; Tail+5 and TUNe+: 11)")
    rep_dim: int = _f(512, min=1)
    plus: bool = _f(False, help="TUNe+: each tail level also takes the expansive output")


@dataclass
class GRUConfig:
    """The seed's default autoregressor: GRU returning its last state (Bajorath et al. 2021,
    §2.2.3).
    """

    reset_after: bool = _f(True)


@dataclass
class TransformerConfig:
    """Seed 004 Table 3: 2 post-LN encoder layers, 2 heads, dff 100, dense [100, c_dim]."""

    layers: int = _f(2, min=1)
    heads: int = _f(2, min=1)
    dff: int = _f(100, min=1)
    dense_units: int = _f(100, min=1)
    dropout: float = _f(0.1, min=0.0, max=0.99)
