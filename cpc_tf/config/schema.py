"""The config schema: typed dataclasses, where every default of cpc_tf lives, once.

A config has five sections (`data`, `augment`, `model`, `train`, `eval`). Presets in
`configs/*.yaml` state only what differs from these defaults. Each field carries its
valid range and a help text in its metadata (see :func:`cpc_tf.config.spec._f`); the
architecture sub-sections of ``model`` live in :mod:`cpc_tf.config.components`.

Numbers cite their papers: Bajorath, Kang & Pink 2021 (the CPC framework, Tables 1-5),
Spijkervet & Burgoyne 2021 (CLMR), Vélez Vásquez & Burgoyne 2022 (TUNe), and Won, Spijkervet &
Choi 2021 (the music-classification book).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cpc_tf.config.components import (
    Conv1DEncoderConfig,
    FrameEncoderConfig,
    GRUConfig,
    Mel2DEncoderConfig,
    MelConvConfig,
    SampleCNNConfig,
    TransformerConfig,
    TUNeConfig,
)
from cpc_tf.config.spec import _f


# ----------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    """Where audio comes from and how it is cut (Bajorath et al. 2021, §2.2.1; Spijkervet & Burgoyne
    2021, §3.1).
    """

    sample_rate: int = _f(
        4410,
        min=1000,
        max=192000,
        help="model rate in Hz; 4410 = 22050/5 for the seed's CPC (Bajorath et al. 2021, §2.2.1)",
    )
    clip_seconds: float = _f(
        4.0,
        min=0.0,
        min_exclusive=True,
        help="length of one CPC crop (Bajorath et al. 2021, §2.2.1: 4 s = T+k windows)",
    )
    crop_samples: int = _f(
        0,
        min=0,
        help="explicit crop length in samples; 0 derives it from clip_seconds "
        "(SimCLR uses 59049 = 3^10, Spijkervet & Burgoyne 2021, §3.3)",
    )
    short_clip_policy: Literal["loop", "pad"] = _f(
        "loop", help="clips shorter than a crop are looped or zero-padded"
    )
    min_clip_fraction: float = _f(
        0.0,
        min=0.0,
        max=1.0,
        help="clips shorter than this fraction of a crop are skipped and counted",
    )
    labels: str = _f("folder", help="folder | regex:PATTERN | csv:PATH (evaluation only)")
    cache_dir: str = _f("", help="decoded cache location; empty = $CPC_TF_CACHE or ~/.cache/cpc_tf")
    shard_seconds: float = _f(
        1800.0,
        min=1.0,
        help="audio seconds per cache shard (smaller = more shards to spread over workers)",
    )
    min_shards: int = _f(8, min=1, help="at least this many shards when there are enough files")
    decode_workers: int = _f(0, min=0, help="decoding processes; 0 = one per CPU core")
    shuffle_buffer: int = _f(1024, min=1, help="clips held for shuffling across files")
    validation_fraction: float = _f(
        0.0, min=0.0, max=0.9, help="fraction of files held out for validation (split by file)"
    )
    seed: int = _f(0, help="seed for shuffling, crops, augmentation draws and initialisation")


# -------------------------------------------------------------------------- augment
@dataclass
class AugmentConfig:
    """The CLMR augmentation chain (Spijkervet & Burgoyne 2021, appendix B); probabilities follow
    CLMR's code.
    """

    enabled: bool = _f(True, help="apply the chain to SimCLR views")
    where: Literal["pipeline", "model"] = _f(
        "pipeline",
        help="run the chain in tf.data (pipeline) or as a model layer on the accelerator",
    )
    polarity_p: float = _f(0.8, min=0.0, max=1.0)
    noise_p: float = _f(0.01, min=0.0, max=1.0)
    noise_snr_db: float = _f(80.0, help="white Gaussian noise SNR in dB")
    gain_p: float = _f(0.3, min=0.0, max=1.0)
    gain_min_db: float = _f(-6.0)
    gain_max_db: float = _f(0.0)
    filter_p: float = _f(0.8, min=0.0, max=1.0, help="coin flip between low-pass and high-pass")
    lowpass_min_hz: float = _f(2200.0, min=1.0)
    lowpass_max_hz: float = _f(4000.0, min=1.0)
    highpass_min_hz: float = _f(200.0, min=1.0)
    highpass_max_hz: float = _f(1200.0, min=1.0)
    filter_order: int = _f(4, min=1, max=12, help="Butterworth order of the FFT-domain filters")
    delay_p: float = _f(0.3, min=0.0, max=1.0)
    delay_min_ms: float = _f(200.0, min=0.0)
    delay_max_ms: float = _f(500.0, min=0.0)
    delay_step_ms: float = _f(50.0, min=0.0, min_exclusive=True)
    delay_mix: float = _f(0.5, min=0.0, max=1.0, help="(x + mix*delayed) / 2")
    pitch_p: float = _f(0.6, min=0.0, max=1.0)
    pitch_min_semitones: float = _f(-5.0)
    pitch_max_semitones: float = _f(5.0)
    reverb_p: float = _f(0.6, min=0.0, max=1.0)
    reverb_room_size: list[float] = _f([0.0, 100.0], help="U[lo, hi], 0..100")
    reverb_reverberance: list[float] = _f([0.0, 100.0], help="U[lo, hi], 0..100")
    reverb_damping: list[float] = _f([0.0, 100.0], help="U[lo, hi], 0..100")
    chain: Literal["waveform", "spectrogram"] = _f(
        "waveform",
        help="waveform: the seven CLMR transforms above on the audio; spectrogram: "
        "BYOL-A's mixup, random resized crop and gain on the log-mel input of the "
        "melconv encoder (Niizumi et al. 2021, §3.3), always inside the model",
    )
    mixup_p: float = _f(
        1.0, min=0.0, max=1.0, help="spectrogram chain: mix with another clip of the batch"
    )
    mixup_ratio: float = _f(
        0.4, min=0.0, max=1.0, help="mixup weight of the other clip, U[0, ratio] (BYOL-A: 0.4)"
    )
    rrc_p: float = _f(1.0, min=0.0, max=1.0, help="spectrogram chain: random resized crop")
    rrc_time_scale: list[float] = _f(
        [0.6, 1.5],
        min=0.0,
        min_exclusive=True,
        help="crop length / spectrogram length, U[lo, hi] (BYOL-A)",
    )
    rrc_freq_scale: list[float] = _f(
        [0.6, 1.5],
        min=0.0,
        min_exclusive=True,
        help="crop height / number of mel bands, U[lo, hi] (BYOL-A)",
    )
    rrc_virtual_scale: float = _f(
        1.5, min=1.0, help="canvas size the crop is placed in (BYOL-A: 1.5)"
    )


# ---------------------------------------------------------------------------- model
@dataclass
class ModelConfig:
    """Which model to build; each component's own settings sit in its sub-section."""

    family: Literal["cpc", "simclr"] = _f("cpc")
    encoder: str = _f(
        "conv1d",
        help="an encoder registered in cpc_tf/models/registry.py, which "
        "also says which family may use it",
    )
    autoregressor: str = _f(
        "gru", help="CPC only: an autoregressor registered in cpc_tf/models/registry.py"
    )
    z_dim: int = _f(256, min=1, help="encoder output per window (Bajorath et al. 2021, Table 1)")
    c_dim: int = _f(512, min=1, help="context size (Bajorath et al. 2021, §2.2.3)")
    context_steps: int = _f(27, min=1, help="T, windows of context (Bajorath et al. 2021, §2.2.1)")
    predict_steps: int = _f(
        3, min=1, help="k, future windows predicted (Bajorath et al. 2021, §2.2.1)"
    )
    step_weighting: Literal["uniform", "linear"] = _f(
        "uniform", help="linear weights the nearer future heavier (Bajorath et al. 2021, §4)"
    )
    prediction: Literal["auto", "last", "all"] = _f(
        "auto",
        help="CPC: predict the future from c_T only (last, Bajorath et al. 2021) or from every "
        "context position c_t (all, van den Oord et al. 2018). auto: last for window "
        "encoders, all for frame-sequence encoders",
    )
    negatives: Literal["same_step", "batch"] = _f(
        "same_step",
        help="CPC negatives: same_step = the other clips' windows at the same position "
        "(Bajorath et al. 2021); batch = any window of the global batch, other "
        "positions of the same clip included (Rivière et al. 2020)",
    )
    num_negatives: int = _f(
        0,
        min=0,
        help="with negatives=batch: negatives drawn per prediction "
        "(CPC_audio: 128); 0 = every window of the batch",
    )
    queue_size: int = _f(
        0,
        min=0,
        help="with negatives=batch: also score against this many codes "
        "from earlier batches (a MoCo-style queue, He et al. 2020)",
    )
    projection_dims: list[int] = _f(
        [512, 128], help="SimCLR head (Spijkervet & Burgoyne 2021, §3.3)"
    )
    temperature: float = _f(
        0.5, min=0.0, min_exclusive=True, help="NT-Xent tau (Spijkervet & Burgoyne 2021, §3.4)"
    )
    synchronized_bn: bool = _f(True, help="cross-replica BatchNorm under a strategy")
    bn_momentum: float = _f(
        0.9,
        min=0.0,
        max=1.0,
        help="BatchNorm moving-statistics momentum (Keras convention). 0.9 equals "
        "PyTorch's default used by CLMR/TUNe; Keras' 0.99 leaves inference-mode "
        "statistics near their initial values for the first thousands of steps",
    )
    conv1d: Conv1DEncoderConfig = field(default_factory=Conv1DEncoderConfig)
    mel2d: Mel2DEncoderConfig = field(default_factory=Mel2DEncoderConfig)
    frame: FrameEncoderConfig = field(default_factory=FrameEncoderConfig)
    melconv: MelConvConfig = field(default_factory=MelConvConfig)
    samplecnn: SampleCNNConfig = field(default_factory=SampleCNNConfig)
    tune: TUNeConfig = field(default_factory=TUNeConfig)
    gru: GRUConfig = field(default_factory=GRUConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)


# ---------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    """Optimisation (Bajorath et al. 2021, §2.2.6: Adam 1e-5, batch 8; Spijkervet & Burgoyne 2021:
    Adam 3e-4).
    """

    epochs: int = _f(10, min=1)
    batch_size: int = _f(8, min=1, help="global batch, split across replicas")
    steps_per_epoch: int = _f(0, min=0, help="0 = one crop per training clip per epoch")
    validation_steps: int = _f(0, min=0, help="0 = one crop per validation clip")
    optimizer: Literal["adam", "adamw", "sgd"] = _f("adam")
    learning_rate: float = _f(1e-5, min=0.0, min_exclusive=True)
    lr_schedule: Literal["constant", "cosine"] = _f(
        "constant",
        help="after the warm-up: keep the rate, or decay it to 0 along a cosine over the "
        "run (Loshchilov & Hutter 2017)",
    )
    warmup_steps: int = _f(0, min=0, help="linear warm-up from 0 to train.learning_rate")
    beta_1: float = _f(0.9, min=0.0, max=1.0)
    beta_2: float = _f(0.999, min=0.0, max=1.0)
    weight_decay: float = _f(0.0, min=0.0)
    clipnorm: float = _f(0.0, min=0.0, help="0 = no gradient clipping")
    mixed_precision: bool = _f(
        False, help="mixed_float16 (GPU) / mixed_bfloat16; logits and loss stay float32"
    )
    jit_compile: bool = _f(False, help="XLA-compile the train step")
    supervised: bool = _f(
        False,
        help="train the encoder and a linear head with cross-entropy on "
        "data.labels instead of the self-supervised loss (the "
        "end-to-end reference, Spijkervet & Burgoyne 2021 §4.3)",
    )
    export_savedmodel: bool = _f(
        False,
        help="also write RUN_DIR/saved_model/ with model.export(): a TF "
        "SavedModel whose `serve` maps model inputs to the representation",
    )
    strategy: Literal["auto", "none", "mirrored", "multiworker"] = _f("auto")
    log_every_steps: int = _f(
        0, min=0, help="also write TensorBoard scalars every N steps; 0 = per epoch only"
    )
    keep_checkpoints: int = _f(
        2,
        min=0,
        help="per-epoch checkpoints kept: the last N plus the best "
        "(lowest val_loss, else loss); 0 keeps all",
    )
    seed: int = _f(0)


# ----------------------------------------------------------------------------- eval
@dataclass
class EvalConfig:
    """Downstream evaluation (Bajorath et al. 2021, §2.3, Tables 4-5; Spijkervet & Burgoyne 2021,
    §3.6 and §4.4).
    """

    crops_per_file: int = _f(10, min=1, help="num_em_samples_per_data (Bajorath et al. 2021, §2.3)")
    crop_mode: Literal["random", "sliding"] = _f(
        "random", help="random crops, or sliding chunks that cover each whole file"
    )
    hop_seconds: float = _f(
        0.0,
        min=0.0,
        help="sliding chunks: seconds between chunk starts (0 = the chunk length, no overlap)",
    )
    cpc_representation: Literal["auto", "c_last", "c_mean", "z_mean"] = _f(
        "auto",
        help="what a CPC crop embeds to: the last context c_T (Bajorath et al. 2021 §2.3), "
        "the time-mean of the contexts c_t, or the time-mean of the codes z_t. auto: "
        "c_last for window encoders, c_mean for frame-sequence encoders (CLMR §3.5)",
    )
    frame_level: bool = _f(False, help="also store frame-level z/c with timestamps")
    batch_size: int = _f(64, min=1, help="extraction batch")
    classifier: Literal["logistic", "linear", "mlp"] = _f(
        "logistic",
        help="logistic: L2 logistic regression trained to convergence on standardised "
        "features, its C chosen by cross-validation on the training files; linear: "
        "the Keras probe of Bajorath et al. 2021 Table 5 (10 epochs, lr 1e-4); mlp: "
        "one hidden layer (Spijkervet & Burgoyne 2021 §3.6)",
    )
    pool: Literal["mean", "mean_std", "none"] = _f(
        "mean",
        help="file-level features for the headline: the mean (or mean and std) of a file's "
        "crop embeddings, probed one row per file; none = probe crops, average "
        "their probabilities per file",
    )
    logistic_c: list[float] = _f(
        [0.001, 0.01, 0.1, 1.0, 10.0, 100.0],
        min=0.0,
        min_exclusive=True,
        help="inverse L2 strengths tried for the logistic probe",
    )
    logistic_folds: int = _f(3, min=2, help="cross-validation folds (by file) that choose C")
    mlp_hidden: int = _f(512, min=1)
    probe_epochs: int = _f(10, min=1, help="Bajorath et al. 2021, Table 5")
    probe_learning_rate: float = _f(
        1e-4, min=0.0, min_exclusive=True, help="Bajorath et al. 2021, Table 5"
    )
    probe_batch_size: int = _f(32, min=1, help="Bajorath et al. 2021, Table 5")
    probe_dropout: float = _f(0.1, min=0.0, max=0.99)
    probe_weight_decay: float = _f(0.0, min=0.0, help="CLMR uses 1e-6")
    early_stopping_patience: int = _f(0, min=0, help="0 = off; CLMR uses 5")
    reduce: Literal["none", "autoencoder"] = _f("none")
    autoencoder_units: list[int] = _f(
        [256, 256, 128, 64, 32, 64, 128, 256], help="Bajorath et al. 2021, Table 4"
    )
    autoencoder_dropout: float = _f(0.1, min=0.0, max=0.99)
    autoencoder_epochs: int = _f(10, min=1)
    test_fraction: float = _f(0.2, min=0.0, max=0.9, min_exclusive=True)
    folds: int = _f(0, min=0, help="0 = a single split")
    tsne_max_points: int = _f(5000, min=10, help="per split (Bajorath et al. 2021, §2.3)")
    label_fractions: list[float] = _f([], help="data-efficiency curve, e.g. [0.01, 0.1, 1.0]")
    seeds: int = _f(1, min=1, help="repeat the probe with this many seeds")
    seed: int = _f(0)


@dataclass
class Config:
    """A whole cpc_tf configuration."""

    name: str = _f("cpc_conv1d_gru")
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # ---- derived quantities (never stored, always computed) ----
    @property
    def crop_samples(self) -> int:
        """Samples in one training crop."""
        if self.data.crop_samples:
            return int(self.data.crop_samples)
        return int(round(self.data.clip_seconds * self.data.sample_rate))

    @property
    def num_windows(self) -> int:
        """T + k for window-based CPC encoders."""
        return self.model.context_steps + self.model.predict_steps

    @property
    def window_samples(self) -> int:
        """Samples per CPC window: crop / (T+k); 4 s at 4410 Hz over 30 windows = 588."""
        return self.crop_samples // self.num_windows
