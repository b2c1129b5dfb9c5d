"""The one path from audio chunks to embeddings, shared by `cpc_tf extract` and the Python API.

Both front ends cut audio into chunks of the model's input length, call the model on
batches of chunks and pool chunk embeddings per sound with the functions here, so the
command line and :class:`cpc_tf.Embedder` cannot disagree:

* :func:`chunk_plan` — where sliding chunks start and how many real samples each holds.
  The last chunk of a sound is completed with zeros; its real length travels with it.
  A sound shorter than one chunk is first completed by ``data.short_clip_policy``
  (:func:`fill_short`: looped by default, as in training), so its one chunk holds no
  silence the model never saw.
* :func:`cut_chunks` — a batch of chunks from in-memory audio (zero-padded at the end).
* :class:`ModelRunner` — calls the model on a batch of flat chunks ``[b, L]`` and returns
  the chunk embeddings (c_T, the time-mean of c_t or of z_t for CPC, h for SimCLR), or
  the frames of every chunk (CPC's z_t or c_t, a SimCLR encoder's feature map).
* :func:`pool_groups` — the mean (or mean and standard deviation) of each sound's chunk
  embeddings, weighted by the real samples of each chunk, so the zero padding of the
  last partial chunk counts only in proportion to the audio it holds.

Nothing heavy is imported at module level; TensorFlow loads with the first model call.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cpc_tf.config import Config

#: Frame kinds of :meth:`ModelRunner.frames`: CPC contexts, CPC codes, an encoder's feature map.
FRAME_KINDS: tuple[str, ...] = ("c", "z", "map")


# ------------------------------------------------------------------- chunking
def sliding_count(num_samples: int, length: int, hop: int) -> int:
    """Chunks of `length` every `hop` samples that cover `num_samples` (at least one)."""
    return 1 + max(0, math.ceil((int(num_samples) - length) / hop))


def chunk_plan(
    num_samples: int, length: int, hop: int | None = None, offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Starts and real lengths of the sliding chunks that cover samples ``[offset, num_samples)``.

    Args:
        num_samples: Length of the sound.
        length: Chunk length (the model's input length).
        hop: Samples between chunk starts (default: `length`, no overlap).
        offset: Where the first chunk starts; nothing is planned when it lies past the end.

    Returns:
        ``(starts, valid)``, int64 arrays: each chunk's first sample and how many of its
        `length` samples are real audio (the rest is zero padding).
    """
    hop = int(hop or length)
    span = int(num_samples) - int(offset)
    if span <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = int(offset) + np.arange(sliding_count(span, length, hop), dtype=np.int64) * hop
    valid = np.minimum(length, int(num_samples) - starts)
    return starts, valid.astype(np.int64)


def fill_short(audio: np.ndarray, length: int, policy: str) -> np.ndarray:
    """Rows of `audio` ``[n, s]`` shorter than `length`, looped to `length` (``policy`` loop),
    as ``cpc_tf.audio.datasets.fit_length`` does; longer audio and ``pad`` return it as is
    (:func:`cut_chunks` zero-pads).
    """
    samples = audio.shape[1]
    if policy != "loop" or samples >= length or samples == 0:
        return audio
    return np.tile(audio, (1, -(-length // samples)))[:, :length]


def cut_chunks(audio: np.ndarray, rows: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Chunks ``audio[rows[i], starts[i]: starts[i] + length]`` as float32 ``[b, length]``,
    zero-padded.
    """
    out = np.zeros((len(rows), length), np.float32)
    for k, (row, start) in enumerate(zip(rows.tolist(), starts.tolist())):
        piece = audio[row, start : start + length]
        out[k, : len(piece)] = piece
    return out


# ------------------------------------------------------------------- pooling
def pool_groups(
    values: np.ndarray, groups: np.ndarray, weights: np.ndarray | None = None, how: str = "mean"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool rows that share a group: weighted ``mean`` or ``mean_std`` (the mean, then the std).

    Args:
        values: ``[n, d]`` rows (chunk embeddings).
        groups: ``[n]`` group of each row (a sound or file index).
        weights: ``[n]`` non-negative weight of each row (real samples); ``None`` weighs all
            rows alike. A group whose weights are all zero is pooled unweighted.
        how: ``mean`` or ``mean_std`` (population standard deviation, 0 for one row).

    Returns:
        ``(group ids sorted, pooled float32 [g, d] or [g, 2d], first row of each group)``.
    """
    if how not in ("mean", "mean_std"):
        raise ValueError(f"unknown pooling {how!r}; expected 'mean' or 'mean_std'")
    values = np.asarray(values, np.float64)
    ids, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    w = np.ones(len(values)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape != (len(values),) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite, non-negative and one per row")
    total = np.bincount(inverse, weights=w, minlength=len(ids))
    if (total <= 0).any():  # all-zero weights: fall back to equal weights in those groups
        w = np.where(total[inverse] > 0, w, 1.0)
        total = np.bincount(inverse, weights=w, minlength=len(ids))
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(ids)))
    ws = w[order][:, None]
    mean = np.add.reduceat(values[order] * ws, bounds, axis=0) / total[:, None]
    if how == "mean":
        return ids, mean.astype(np.float32), first
    square = np.add.reduceat(np.square(values[order]) * ws, bounds, axis=0) / total[:, None]
    std = np.sqrt(np.maximum(square - np.square(mean), 0.0))
    return ids, np.concatenate([mean, std], axis=1).astype(np.float32), first


# ------------------------------------------------------------------- the model call
def encoder_layer(base: Any) -> Any:
    """The registered encoder layer inside a model's functional ``encoder`` wrapper."""
    return base.encoder.layers[-1]


class ModelRunner:
    """A loaded cpc_tf model called on batches of flat chunks ``[b, L]``.

    Args:
        model: A CPC, SimCLR or supervised model (a supervised run wraps its family's model
            in ``model.base``).
        cfg: The model's config (it fixes the input layout and the CPC representation).
    """

    def __init__(self, model: Any, cfg: Config) -> None:
        from cpc_tf.models.registry import cpc_representation, model_input_shape

        self.model = model
        self.base = getattr(model, "base", model)
        self.cfg = cfg
        self.is_cpc = cfg.model.family == "cpc"
        # model_input_shape builds a probe encoder: outside any tf.function
        self.input_shape = tuple(int(v) for v in model_input_shape(cfg))
        self.length = int(np.prod(self.input_shape))
        self.representation = cpc_representation(cfg) if self.is_cpc else "h"
        self._functions: dict[str, Any] = {}

    @property
    def frame_kinds(self) -> tuple[str, ...]:
        """The frame kinds this model gives: ``c`` and ``z`` (CPC; ``c`` needs a context per
        position) or ``map`` (an encoder with a feature map).
        """
        if self.is_cpc:
            return ("c", "z") if self.has_context_sequence else ("z",)
        return ("map",) if hasattr(encoder_layer(self.base), "feature_map") else ()

    @property
    def has_context_sequence(self) -> bool:
        """True when the autoregressor gives a context c_t per position (GRU), not only c_T."""
        return self.is_cpc and len(self.base.autoregressor.output.shape) == 3

    def embed(self, crops: Any) -> np.ndarray:
        """One embedding per chunk, float32 ``[b, d]``."""
        return self.run(crops, "embedding")["embedding"]

    def frames(self, crops: Any, kind: str) -> np.ndarray:
        """Frames of every chunk, float32 ``[b, S, d]`` (`kind` one of :attr:`frame_kinds`)."""
        if kind not in self.frame_kinds:
            raise ValueError(
                f"frame kind {kind!r} is not available for this model; "
                f"available: {', '.join(self.frame_kinds) or 'none'}"
            )
        return self.run(crops, kind)["frames"]

    def run(self, crops: Any, what: str) -> dict[str, np.ndarray]:
        """Call the model on ``crops`` ``[b, L]``.

        `what` is ``embedding``; ``extract_frames`` (the embedding plus what ``extract
        --frame-level`` stores: c_t in sequence mode, z_t in window mode); or a frame kind.
        """
        import tensorflow as tf

        fn = self._functions.get(what)
        if fn is None:
            fn = self._functions[what] = self._make_function(what)
        out = fn(tf.convert_to_tensor(crops, tf.float32))
        return {k: v.numpy() for k, v in out.items()}

    def _make_function(self, what: str) -> Any:
        import tensorflow as tf

        shape = list(self.input_shape)

        @tf.function(input_signature=[tf.TensorSpec([None, self.length], tf.float32)])
        def call(x: tf.Tensor) -> dict[str, tf.Tensor]:
            x = tf.reshape(x, [-1, *shape])
            return {k: tf.cast(v, tf.float32) for k, v in self._outputs(x, what).items()}

        return call

    def _outputs(self, x: Any, what: str) -> dict[str, Any]:
        base = self.base
        if what in ("embedding", "extract_frames"):
            rep = (
                base.representation(x, kind=self.representation)
                if self.is_cpc
                else self.model(x, training=False)
            )
            out = {"embedding": rep}
            if what == "extract_frames":
                z, c = base.codes_and_contexts(x, training=False)
                out["frames"] = c if base.frame_mode else z
            return out
        if what == "map":
            feats = base._features(x)
            return {"frames": encoder_layer(base).feature_map(feats, training=False)}
        if base.frame_mode:  # sequence mode: the autoregressor already reads every code
            z, c = base.codes_and_contexts(x, training=False)
        else:  # window mode: every window's code, and the context over all of them
            z = base.encode_windows(x, training=False)
            c = base.autoregressor(z, training=False) if what == "c" else None
        return {"frames": z if what == "z" else c}
