"""The HEAR 2021 common API over a cpc_tf model (Turian et al. 2022, "HEAR: Holistic
Evaluation of Audio Representations", §3 and the "common API" of the challenge).

A module written by ``cpc_tf export --format hear`` is three thin functions that call
these:

* :func:`load_model` returns a :class:`HearModel` (a ``tf.Module``, as the HEAR
  validator requires) with ``sample_rate``, ``scene_embedding_size`` and
  ``timestamp_embedding_size``;
* :func:`get_scene_embeddings` maps audio ``[n_sounds, n_samples]`` (float in [-1, 1],
  at ``model.sample_rate``) to a float32 ``tf.Tensor`` ``[n_sounds, scene_embedding_size]``:
  :meth:`cpc_tf.Embedder.embed`, the length-weighted mean over chunks;
* :func:`get_timestamp_embeddings` returns ``(embeddings [n_sounds, frames, dim],
  timestamps [n_sounds, frames])``, timestamps in **milliseconds** at frame centres,
  evenly spaced at most :data:`MAX_HOP_SECONDS` apart: :meth:`cpc_tf.Embedder.embed_frames`
  (CPC: the context c_t where the autoregressor gives one per position, else z_t;
  SimCLR: the encoder's feature map).

HEAR accepts only the rates in :data:`HEAR_RATES`; a model trained at another rate
declares the smallest HEAR rate at or above its own and resamples inside.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from cpc_tf.errors import InputError

#: Sample rates the HEAR 2021 validator accepts.
HEAR_RATES: tuple[int, ...] = (16000, 22050, 44100, 48000)
#: Largest spacing of timestamp embeddings (HEAR asks for 50 ms or less).
MAX_HOP_SECONDS = 0.05


def hear_sample_rate(model_rate: int) -> int:
    """The smallest HEAR rate at or above `model_rate` (48 kHz above that)."""
    return next((r for r in HEAR_RATES if r >= int(model_rate)), HEAR_RATES[-1])


class HearModel(tf.Module):
    """A cpc_tf :class:`~cpc_tf.Embedder` with the attributes HEAR reads.

    Args:
        embedder: The model to serve.
        sample_rate: The input rate to declare (one of :data:`HEAR_RATES`; default
            :func:`hear_sample_rate` of the model's rate).
        hop_seconds: Largest spacing of timestamp embeddings (at most 0.05).
    """

    def __init__(
        self, embedder: Any, sample_rate: int | None = None, hop_seconds: float = MAX_HOP_SECONDS
    ) -> None:
        super().__init__(name="cpc_tf_hear")
        rate = int(sample_rate or hear_sample_rate(embedder.sample_rate))
        if rate not in HEAR_RATES:
            raise InputError(
                f"HEAR sample_rate must be one of {', '.join(map(str, HEAR_RATES))}, got {rate}"
            )
        if not 0 < hop_seconds <= MAX_HOP_SECONDS:
            raise InputError(
                f"HEAR timestamp hop must be in (0, {MAX_HOP_SECONDS}] s, got {hop_seconds}"
            )
        self._embedder = embedder
        self.sample_rate = rate
        self.hop_seconds = float(hop_seconds)
        self.scene_embedding_size = int(embedder.embedding_size)
        self.timestamp_embedding_size = int(embedder.frame_size())

    @property
    def embedder(self) -> Any:
        """The wrapped :class:`~cpc_tf.Embedder`."""
        return self._embedder


def load_model(
    model_file_path: str = "", sample_rate: int | None = None, hop_seconds: float = MAX_HOP_SECONDS
) -> HearModel:
    """A :class:`HearModel` from a cpc_tf model file, run folder or exported folder.

    Raises:
        InputError: (a ValueError) when no path is given or it holds no cpc_tf model.
    """
    from cpc_tf.api import load

    if not model_file_path:
        raise InputError("load_model needs the path of a cpc_tf model (.keras file or run folder)")
    return HearModel(load(model_file_path), sample_rate=sample_rate, hop_seconds=hop_seconds)


def _sounds(audio: Any) -> Any:
    """HEAR's audio is always 2-D ``[n_sounds, n_samples]``."""
    shape = tuple(getattr(audio, "shape", np.shape(audio)))
    if len(shape) != 2:
        raise InputError(f"HEAR audio must be 2-D [n_sounds, n_samples], got shape {shape}")
    return audio


def get_scene_embeddings(audio: Any, model: HearModel) -> tf.Tensor:
    """float32 ``[n_sounds, model.scene_embedding_size]`` for ``[n_sounds, n_samples]`` audio."""
    vectors = model.embedder.embed(_sounds(audio), model.sample_rate)
    return tf.convert_to_tensor(vectors, tf.float32)


def get_timestamp_embeddings(audio: Any, model: HearModel) -> tuple[tf.Tensor, tf.Tensor]:
    """``(float32 [n_sounds, frames, dim], float32 [n_sounds, frames] milliseconds)``."""
    frames, seconds = model.embedder.embed_frames(
        _sounds(audio), model.sample_rate, hop_seconds=model.hop_seconds
    )
    return (
        tf.convert_to_tensor(frames, tf.float32),
        tf.convert_to_tensor(np.asarray(seconds, np.float64) * 1000.0, tf.float32),
    )
