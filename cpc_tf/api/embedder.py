"""`Embedder`: clip and frame embeddings of in-memory audio or of a file, from one model.

Audio of any length goes through the model in chunks of the model's input length
(:attr:`Embedder.chunk_seconds`), ``batch_size`` chunks at a time, so memory holds the
sound, one batch of chunks and the outputs, however long the sound is. The chunking,
the model call and the pooling are those of ``cpc_tf extract`` (:mod:`cpc_tf.inference`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from cpc_tf.api.inputs import prepare_sounds
from cpc_tf.config import Config
from cpc_tf.errors import InputError
from cpc_tf.inference import (
    ModelRunner,
    chunk_plan,
    cut_chunks,
    fill_short,
    pool_groups,
)


class Embedder:
    """Embeddings of audio from one trained (or randomly initialised) cpc_tf model.

    Usually made by :func:`cpc_tf.load`; ``Embedder(model, config)`` wraps a model built
    in the session (e.g. :func:`cpc_tf.references.random_init_model`).

    Args:
        model: A CPC, SimCLR or supervised cpc_tf model.
        config: Its config (``model.cfg``).
        source: Where the model came from (shown by ``repr``).
        batch_size: Chunks per model call (default ``eval.batch_size`` of the config).
    """

    def __init__(
        self, model: Any, config: Config, source: str = "", batch_size: int | None = None
    ) -> None:
        self.config = config
        self.source = source
        self.batch_size = int(batch_size or config.eval.batch_size)
        if self.batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self._runner = ModelRunner(model, config)
        self._shapes: dict[str, tuple[int, ...]] = {}

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"Embedder({cfg.name!r}: {cfg.model.family}/{cfg.model.encoder}, "
            f"{self.sample_rate} Hz, "
            f"chunks of {self.chunk_seconds:.3g} s{', from ' + self.source if self.source else ''})"
        )

    # ------------------------------------------------------------------ facts
    @property
    def model(self) -> Any:
        """The Keras model."""
        return self._runner.model

    @property
    def sample_rate(self) -> int:
        """The model's sample rate in Hz (audio at other rates is resampled to it)."""
        return int(self.config.data.sample_rate)

    @property
    def chunk_samples(self) -> int:
        """Samples per chunk: the model's input length."""
        return self._runner.length

    @property
    def chunk_seconds(self) -> float:
        """Seconds per chunk."""
        return self.chunk_samples / self.sample_rate

    @property
    def embedding_size(self) -> int:
        """Size of a clip embedding (:meth:`embed`)."""
        return self._shape("embedding")[-1]

    @property
    def frame_kinds(self) -> tuple[str, ...]:
        """Frame kinds of :meth:`embed_frames`: ``("c", "z")`` for CPC with a GRU, ``("z",)``
        for CPC with the Transformer (it gives only c_T), ``("map",)`` for SimCLR encoders.
        """
        return self._runner.frame_kinds

    @property
    def default_frame_kind(self) -> str:
        """The kind :meth:`embed_frames` returns by default: the first of :attr:`frame_kinds`."""
        if not self.frame_kinds:
            raise InputError(f"the {self.config.model.encoder} encoder has no frame-level output")
        return self.frame_kinds[0]

    def frame_size(self, kind: str | None = None) -> int:
        """Size of one frame embedding of `kind` (default :attr:`default_frame_kind`)."""
        return self._shape(self._kind(kind))[-1]

    @property
    def frame_hop_seconds(self) -> float:
        """The model's own spacing of frames of the default kind: one chunk over its frames."""
        return self._native_hop(self.default_frame_kind) / self.sample_rate

    def _shape(self, what: str) -> tuple[int, ...]:
        """Output shape of one chunk (probed once with a silent chunk)."""
        if what not in self._shapes:
            probe = np.zeros((1, self.chunk_samples), np.float32)
            out = (
                self._runner.embed(probe)
                if what == "embedding"
                else self._runner.frames(probe, what)
            )
            self._shapes[what] = tuple(int(v) for v in out.shape[1:])
        return self._shapes[what]

    def _native_hop(self, kind: str) -> float:
        return self.chunk_samples / self._shape(kind)[0]

    def _kind(self, kind: str | None) -> str:
        if kind is None:
            return self.default_frame_kind
        if kind not in self.frame_kinds:
            why = (
                " (the Transformer autoregressor gives only c_T, no context per frame)"
                if kind == "c" and self._runner.is_cpc
                else ""
            )
            raise InputError(
                f"kind={kind!r} is not available for this {self.config.model.family} model{why}; "
                f"available: {', '.join(repr(k) for k in self.frame_kinds) or 'none'}"
            )
        return kind

    # ------------------------------------------------------------------ clip level
    def embed(self, audio: Any, sample_rate: int) -> np.ndarray:
        """One embedding per sound, pooled over the chunks that cover the whole sound.

        The sound is cut into consecutive chunks of :attr:`chunk_seconds`; the last one
        is zero-padded, and the chunk embeddings (what ``extract`` stores per crop) are
        averaged with weights proportional to the real samples in each chunk. A sound
        shorter than one chunk is looped to fill it (zero-padded with the config's
        ``data.short_clip_policy: pad``), as in training.

        Args:
            audio: One sound (1-D) or ``[n_sounds, n_samples]``; float in [-1, 1] or
                integer PCM, at any rate (see :mod:`cpc_tf.api.inputs` for the rules).
            sample_rate: The rate of `audio` in Hz.

        Returns:
            float32 ``[embedding_size]`` for a 1-D input, else ``[n_sounds, embedding_size]``.

        Raises:
            InputError: (a ValueError) for empty, non-finite or mis-shaped audio.
        """
        sounds, single = prepare_sounds(audio, sample_rate, self.sample_rate)
        sounds = fill_short(sounds, self.chunk_samples, self.config.data.short_clip_policy)
        n, total = sounds.shape
        starts, valid = chunk_plan(total, self.chunk_samples)
        rows = np.repeat(np.arange(n), len(starts))
        chunks = self._run(sounds, rows, np.tile(starts, n), "embedding")
        _, pooled, _ = pool_groups(chunks, rows, np.tile(valid, n), "mean")
        return pooled[0] if single else pooled

    def embed_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        """:meth:`embed` of a file, decoded to mono at the model's rate by cpc_tf's own reader.

        Returns:
            float32 ``[embedding_size]``.

        Raises:
            InputError: when the file cannot be decoded (with the reason).
        """
        from cpc_tf.audio.files import AudioFileError, decode_audio

        try:
            decoded = decode_audio(os.fspath(path), self.sample_rate)
        except AudioFileError as exc:
            raise InputError(f"{os.fspath(path)}: {exc}") from None
        return self.embed(decoded.samples, self.sample_rate)

    # ------------------------------------------------------------------ frame level
    def embed_frames(
        self,
        audio: Any,
        sample_rate: int,
        hop_seconds: float | None = None,
        kind: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frame embeddings with the time of each frame's centre.

        Frames are the model's own: for CPC the context c_t (``kind="c"``, GRU only) or
        the code z_t (``kind="z"``) of each window or encoder step; for SimCLR the
        encoder's feature map before pooling (``kind="map"``). The contexts run over one
        chunk at a time (they restart at every chunk boundary). Frames are taken as
        evenly spread over their chunk, so the model's own hop is
        :attr:`frame_hop_seconds`. A finer `hop_seconds` is met by running the model
        again on audio shifted by fractions of that hop and interleaving the frames: the
        hop returned is the model's hop divided by the smallest whole number that
        brings it to `hop_seconds` or below (dividing the hop in samples exactly where
        possible, so the times are evenly spaced). Frames that start past the end of
        the sound (padding, or the loop that fills a sound shorter than a chunk) are
        dropped; there is always at least one.

        Args:
            audio: As for :meth:`embed`.
            sample_rate: The rate of `audio` in Hz.
            hop_seconds: Largest wanted spacing of frames (default: the model's own).
            kind: ``"c"``, ``"z"`` or ``"map"`` (default :attr:`default_frame_kind`).

        Returns:
            ``(embeddings, timestamps)``: float32 ``[n_sounds, frames, dim]`` and float64
            ``[n_sounds, frames]`` seconds (``[frames, dim]`` and ``[frames]`` for 1-D input).
        """
        kind = self._kind(kind)
        sounds, single = prepare_sounds(audio, sample_rate, self.sample_rate)
        n, total = sounds.shape
        steps, dim = self._shape(kind)
        hop = self._native_hop(kind)
        offsets = self._phase_offsets(hop, hop_seconds)
        filled = (
            fill_short(sounds, self.chunk_samples + offsets[-1], self.config.data.short_clip_policy)
            if total < self.chunk_samples
            else sounds
        )  # every shifted run sees the loop too
        starts = np.concatenate(
            [
                chunk_plan(max(total, filled.shape[1] - offsets[-1]), self.chunk_samples, offset=o)[
                    0
                ]
                for o in offsets
            ]
        )
        frame_start = starts[:, None] + np.arange(steps)[None, :] * hop  # [chunks, steps]
        keep = (frame_start < total).ravel()  # the first frame always starts at 0
        centre = (frame_start + hop / 2.0).ravel()
        chosen = np.flatnonzero(keep)[np.argsort(centre[keep], kind="stable")]
        position = np.full(keep.size, -1, np.int64)  # flat frame index -> output column
        position[chosen] = np.arange(len(chosen))
        out = np.zeros((n, len(chosen), dim), np.float32)
        rows, chunk_ids = np.repeat(np.arange(n), len(starts)), np.tile(np.arange(len(starts)), n)
        for b in range(0, len(rows), self.batch_size):
            r, c = rows[b : b + self.batch_size], chunk_ids[b : b + self.batch_size]
            frames = self._runner.frames(cut_chunks(filled, r, starts[c], self.chunk_samples), kind)
            cols = position.reshape(len(starts), steps)[c]  # [b, steps]
            hit = cols >= 0
            out[np.repeat(r, steps).reshape(-1, steps)[hit], cols[hit]] = frames[hit]
        times = np.broadcast_to(centre[chosen] / self.sample_rate, (n, len(chosen)))
        return (out[0], times[0].copy()) if single else (out, times.copy())

    def _phase_offsets(self, hop: float, hop_seconds: float | None) -> list[int]:
        """Sample offsets of the shifted runs that bring the frame spacing to `hop_seconds` or
        below.
        """
        if hop_seconds is None:
            return [0]
        try:
            wanted = float(hop_seconds) * self.sample_rate
        except (TypeError, ValueError):
            raise InputError(f"hop_seconds must be a number, got {hop_seconds!r}") from None
        if not math.isfinite(wanted) or wanted <= 0:
            raise InputError(f"hop_seconds must be positive, got {hop_seconds!r}")
        runs = max(1, math.ceil(hop / wanted - 1e-9))
        if float(hop).is_integer():  # an exact divisor of the hop keeps the frames evenly spaced
            whole = int(hop)
            runs = next((k for k in range(runs, whole + 1) if whole % k == 0), runs)
        return sorted({round(p * hop / runs) for p in range(runs)})

    # ------------------------------------------------------------------ plumbing
    def _run(
        self, sounds: np.ndarray, rows: np.ndarray, starts: np.ndarray, what: str
    ) -> np.ndarray:
        """The model on every (sound, chunk start) pair, `batch_size` chunks at a time."""
        parts = [
            self._runner.run(
                cut_chunks(
                    sounds,
                    rows[b : b + self.batch_size],
                    starts[b : b + self.batch_size],
                    self.chunk_samples,
                ),
                what,
            )[what]
            for b in range(0, len(rows), self.batch_size)
        ]
        return np.concatenate(parts, axis=0)


def load(source: str | os.PathLike[str], batch_size: int | None = None) -> Embedder:
    """An :class:`Embedder` for a run folder, a cpc_tf ``.keras`` file or an exported folder.

    Args:
        source: A folder written by ``cpc_tf train`` (its ``model.keras``, else its newest
            checkpoint), a ``.keras`` file saved by cpc_tf, or a folder written by
            ``cpc_tf export``.
        batch_size: Chunks per model call (default ``eval.batch_size`` of the run's config).

    Raises:
        InputError: (a ValueError) naming what is missing when `source` is none of these.
    """
    from cpc_tf.api.loading import load_model_and_config

    model, cfg, where = load_model_and_config(source)
    return Embedder(model, cfg, source=where, batch_size=batch_size)
