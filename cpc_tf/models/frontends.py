"""In-model signal layers taken from `cpc_tf.dsp`: the mel frontend and the augmenter.

They live in `dsp` because the data pipeline uses them too; this module only decides,
from the config, whether a model needs one and with which settings.
"""

from __future__ import annotations

import keras

from cpc_tf.config import Config, to_dict


def build_frontend(cfg: Config) -> keras.layers.Layer | None:
    """The log-mel layer a model needs before its encoder, else None.

    ``mel2d``: square patches per CPC window (Bajorath et al. 2021, §2.2.1). ``melconv``: one
    log-mel spectrogram of the whole crop (centred frames of ``n_fft`` samples every ``hop``).
    """
    if cfg.model.encoder == "melconv":
        from cpc_tf.dsp.frontend import LogMelSpectrogram

        mc = cfg.model.melconv
        return LogMelSpectrogram(
            sample_rate=cfg.data.sample_rate,
            n_fft=mc.n_fft,
            hop_length=mc.hop,
            n_mels=mc.n_mels,
            fmin=mc.fmin,
            fmax=mc.fmax,
            pad_mode="constant",
            top_db=None,
            name="frontend",
        )
    if cfg.model.encoder != "mel2d":
        return None
    from cpc_tf.dsp.frontend import MelPatches

    m = cfg.model.mel2d
    return MelPatches(
        sample_rate=cfg.data.sample_rate,
        n_fft=m.n_fft,
        n_mels=m.n_mels,
        frames=m.frames,
        fmin=m.fmin,
        fmax=m.fmax,
        name="frontend",
    )


def build_augmenter(cfg: Config) -> keras.layers.Layer:
    """The configured augmentation chain as a layer.

    ``augment.chain=waveform``: CLMR's chain on the audio (Spijkervet & Burgoyne 2021, appendix B);
    ``spectrogram``: BYOL-A's chain on the log-mel input (Niizumi et al. 2021, §3.3).
    """
    if cfg.augment.chain == "spectrogram":
        from cpc_tf.dsp.spec_augment import SpectrogramAugment

        return SpectrogramAugment(to_dict(cfg.augment), seed=cfg.data.seed, name="augment")
    from cpc_tf.dsp.augment import AudioAugment

    return AudioAugment(
        to_dict(cfg.augment), sample_rate=cfg.data.sample_rate, seed=cfg.data.seed, name="augment"
    )
