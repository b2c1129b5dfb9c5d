"""`cpc_tf extract`: embeddings of every decodable file, written as embeddings.npz.

Following Bajorath et al. 2021 §2.3 (``num_em_samples_per_data``), each file gives
``eval.crops_per_file`` random, seeded crops of the model's input length (or, with
``eval.crop_mode: sliding``, chunks every ``eval.hop_seconds`` that cover the whole
file), and each crop one embedding: c_T for CPC (the time-averaged context for CLMR's
CPC variant) and h for SimCLR. Files shorter than a crop are looped or zero-padded by
``data.short_clip_policy``, never dropped.

Sliding chunks follow the same rules as the Python API (:mod:`cpc_tf.inference`): the
last partial chunk of a file longer than one chunk is zero-padded (never looped), and
``--pool`` weighs each chunk by the real samples it holds, so ``extract --crop-mode
sliding --pool mean`` gives the numbers of :meth:`cpc_tf.Embedder.embed` on the same audio.

Crops are cut in the tf.data graph straight from the cache shards and go through the
model one batch at a time, so memory holds one batch of audio plus the output rows,
however many files there are.

Random crops are drawn from a stateless generator keyed by (``eval.seed``, the file's
relative path, the record offset), so the same seed gives the same crops whatever the
cache's history, shard layout or the other files in the folder. Rows are written in a
fixed order: by file (the cache's sorted paths), then by crop start.

Files longer than the cache's record size (10 minutes) are stored as several records.
Random crops are then shared out between the records in proportion to their length
(the counts add up to exactly ``crops_per_file``), and in sliding mode each record is
chunked on its own, so the chunk that straddles a record boundary is cut at the
boundary and zero-padded (there, and only there, sliding rows differ from the API,
which chunks a sound as one piece).

The file follows the embeddings.npz contract of docs/design.md (``crop_start`` in seconds,
which ``crop_start_unit`` states), plus ``config`` (the
run's YAML), ``skipped_paths``/``skipped_reasons`` and, with ``eval.frame_level`` on a
CPC model, ``frames`` [n, L, d] and ``frame_times`` [L] (seconds from each row's
``crop_start``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from cpc_tf.audio import cache as audio_cache
from cpc_tf.audio.cache import AudioCache, open_cache_for, parse_record
from cpc_tf.audio.datasets import fit_length
from cpc_tf.config import Config, dump_config
from cpc_tf.errors import ConfigError, DataError
from cpc_tf.inference import ModelRunner, pool_groups, sliding_count

AUTOTUNE = tf.data.AUTOTUNE
_HASH_BUCKETS = 1 << 61  # path hashes stay well inside int64 once the seed is added


@dataclass
class ExtractOptions:
    """Everything `cpc_tf extract` needs beyond the config."""

    audio_dir: str
    out: str
    run_dir: str | None = None
    labels: str | None = None
    cache_dir: str | None = None
    progress: bool = True
    tensorboard: str | None = None


def model_input_length(cfg: Config) -> int:
    """Samples per crop that the model consumes."""
    from cpc_tf.models.registry import model_input_shape

    return int(np.prod(model_input_shape(cfg)))


def _hop_samples(cfg: Config, length: int) -> int:
    """Samples between sliding chunk starts: ``eval.hop_seconds``, or the chunk length."""
    if cfg.eval.hop_seconds <= 0:
        return length
    return max(1, int(round(cfg.eval.hop_seconds * cfg.data.sample_rate)))


def _piece_lengths(num_samples: int, records: int, sample_rate: int) -> list[int]:
    """Samples in each cache record of a clip (all full-size but the last)."""
    step = max(1, int(round(audio_cache.RECORD_SECONDS * sample_rate)))
    records = max(1, records)
    return [step] * (records - 1) + [max(1, num_samples - step * (records - 1))]


def expected_rows(cache: AudioCache, cfg: Config) -> int:
    """How many crops (rows) extraction yields for this cache and config."""
    if cfg.eval.crop_mode != "sliding":
        return len(cache.clips) * cfg.eval.crops_per_file
    length = model_input_length(cfg)
    hop = _hop_samples(cfg, length)
    return sum(
        sliding_count(n, length, hop)
        for c in cache.clips
        for n in _piece_lengths(c.num_samples, c.records, cache.sample_rate)
    )


def crop_dataset(cache: AudioCache, cfg: Config, batch_size: int) -> tuple[tf.data.Dataset, int]:
    """Batches of ``(crops [b, L], clip_id [b], start_sample [b])`` and the number of crops.

    The pipeline reads the cache's TFRecord shards and cuts each record into crops as
    it is parsed; no audio is held outside the current records and batch.
    """
    if not cache.clips:
        raise DataError("the cache holds no audio to extract from")
    length = model_input_length(cfg)
    hop = _hop_samples(cfg, length)
    per_file = int(cfg.eval.crops_per_file)
    sliding = cfg.eval.crop_mode == "sliding"
    policy = cfg.data.short_clip_policy
    ids = tf.constant([c.clip_id for c in cache.clips], tf.int64)
    sizes = tf.constant([max(c.num_samples, 1) for c in cache.clips], tf.int64)
    clip_len = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(ids, sizes), default_value=1
    )
    seed = int(cfg.eval.seed)

    def crops_of(record: dict[str, tf.Tensor]) -> tf.data.Dataset:
        audio = record["audio"]
        audio = tf.cond(tf.size(audio) > 0, lambda: audio, lambda: tf.zeros([1], audio.dtype))
        n = tf.shape(audio, out_type=tf.int64)[0]
        offset = record["offset"]
        if sliding:  # chunks every `hop` samples (inference.chunk_plan): a record shorter than
            # one chunk is completed by the policy, the last chunk of a longer one with zeros
            count = 1 + tf.maximum(tf.constant(0, tf.int64), (n - length + hop - 1) // hop)
            target = tf.cast((count - 1) * hop, tf.int32) + length
            padded = tf.cond(
                n < length,
                lambda: fit_length(audio, length, policy),
                lambda: fit_length(audio, target, "pad"),
            )
            starts = tf.range(count, dtype=tf.int64) * hop
            crops = tf.gather(
                padded, tf.cast(starts, tf.int32)[:, None] + tf.range(length)[None, :]
            )
        else:
            # Crops shared out between a clip's records by cumulative rounding: the
            # counts of all its records add up to exactly `per_file`.
            total = clip_len.lookup(record["clip_id"])
            lo = (2 * offset * per_file + total) // (2 * total)
            hi = (2 * (offset + n) * per_file + total) // (2 * total)
            count = tf.cast(tf.maximum(hi - lo, 0), tf.int32)
            padded = fit_length(audio, length, policy)
            room = tf.shape(padded)[0] - length + 1
            key = tf.strings.to_hash_bucket_fast(record["path"], _HASH_BUCKETS)
            stateless_seed = tf.stack([key, seed * 1_000_003 + offset])
            begin = tf.random.stateless_uniform(
                [count], seed=stateless_seed, minval=0, maxval=room, dtype=tf.int32
            )
            crops = tf.gather(padded, begin[:, None] + tf.range(length)[None, :])
            starts = tf.cast(begin, tf.int64)
        crops = tf.ensure_shape(crops, [None, length])
        clip = tf.fill(tf.shape(starts), record["clip_id"])
        return tf.data.Dataset.from_tensor_slices((crops, clip, starts + offset))

    ds = tf.data.Dataset.from_tensor_slices(cache.shard_paths)
    ds = ds.interleave(
        tf.data.TFRecordDataset, cycle_length=1, num_parallel_calls=AUTOTUNE, deterministic=True
    )
    ds = ds.map(parse_record, num_parallel_calls=AUTOTUNE).flat_map(crops_of)
    ds = ds.batch(batch_size).prefetch(AUTOTUNE)
    return ds, expected_rows(cache, cfg)


def _frame_times(cfg: Config, steps: int) -> np.ndarray:
    """Start of each frame in seconds, counted from its crop's start."""
    from cpc_tf.models.registry import code_hop_samples

    return (np.arange(steps) * code_hop_samples(cfg) / cfg.data.sample_rate).astype(np.float32)


def extract_embeddings(
    model: Any, cfg: Config, cache: AudioCache, progress: bool = True, stage: str = "extract"
) -> dict[str, np.ndarray]:
    """Run the model over every crop of the cache.

    ``stage`` names the progress bar. Returns ``embeddings`` [n, d] float32, ``clip_id``
    and ``start`` [n] (an offset in
    samples at ``cfg.data.sample_rate``; :func:`extract` writes it as ``crop_start`` in
    seconds), and
    with ``eval.frame_level`` on CPC also ``frames`` and ``frame_times``. Rows are in
    pipeline order; :func:`extract` puts them in file order.
    """
    from cpc_tf.audio.report import progress_bar

    frame_level = bool(cfg.eval.frame_level)
    if frame_level and cfg.model.family != "cpc":
        raise ConfigError(
            "eval.frame_level (--frame-level) needs a CPC model: "
            f"{cfg.model.family} has no frame sequence"
        )
    ds, total = crop_dataset(cache, cfg, cfg.eval.batch_size)
    runner = ModelRunner(model, cfg)  # a supervised run's model wraps its family's model
    # sequence mode: the context c_t of every frame; window mode: z of every window
    what = "extract_frames" if frame_level else "embedding"
    chunks: dict[str, list[np.ndarray]] = {
        "embeddings": [],
        "clip_id": [],
        "start": [],
        "frames": [],
    }
    with progress_bar(total, stage, progress, unit="crop") as bar:
        for crops, clip, start in ds:
            out = runner.run(crops, what)
            chunks["embeddings"].append(out["embedding"])
            chunks["clip_id"].append(clip.numpy())
            chunks["start"].append(start.numpy())
            if frame_level:
                chunks["frames"].append(out["frames"])
            bar.update(int(crops.shape[0]))
    if not chunks["embeddings"]:
        raise DataError("no crops were extracted: the cache holds no audio")
    result: dict[str, np.ndarray] = {
        "embeddings": np.concatenate(chunks["embeddings"]).astype(np.float32, copy=False),
        "clip_id": np.concatenate(chunks["clip_id"]).astype(np.int64, copy=False),
        "start": np.concatenate(chunks["start"]).astype(np.int64, copy=False),
    }
    if frame_level:
        frames = np.concatenate(chunks["frames"]).astype(np.float32, copy=False)
        result["frames"] = frames
        result["frame_times"] = _frame_times(cfg, frames.shape[1])
    return result


def _prepare(cfg: Config, options: ExtractOptions, sample_rate: int) -> tuple[AudioCache, Any]:
    """Check --out, build or open the cache at `sample_rate`, parse the label source."""
    from cpc_tf.audio.labels import parse_label_source

    if os.path.isdir(options.out):
        raise ConfigError(
            f"--out {options.out} is a folder; give a file name such as embeddings.npz"
        )
    out_dir = os.path.dirname(os.path.abspath(options.out))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    label_source = parse_label_source(options.labels or cfg.data.labels, options.audio_dir)
    cache = open_cache_for(
        cfg,
        options.audio_dir,
        cache_dir=options.cache_dir,
        progress=options.progress,
        sample_rate=sample_rate,
    )
    if options.progress:
        print(f"cpc_tf: {cache.summary()}", flush=True)
    return cache, label_source


def _payload(
    cache: AudioCache,
    label_source: Any,
    options: ExtractOptions,
    embeddings: np.ndarray,
    clip_index: np.ndarray,
    crop_start: np.ndarray,
    run: str,
    model: str,
    config: str,
) -> dict[str, Any]:
    """The arrays of an embeddings file (docs/design.md contract plus provenance)."""
    rel_paths = [c.path for c in cache.clips]
    file_labels = label_source.labels_for(rel_paths)
    return {
        "embeddings": embeddings.astype(np.float32, copy=False),
        "paths": np.array([rel_paths[i] for i in clip_index], dtype=str),
        "labels": np.array([file_labels[i] for i in clip_index], dtype=str),
        "crop_start": crop_start.astype(np.float32),
        "crop_start_unit": np.array("seconds"),
        "clip_index": clip_index,
        "run": np.array(run),
        "model": np.array(model),
        "config": np.array(config),
        "audio_dir": np.array(os.path.abspath(options.audio_dir)),
        "label_source": np.array(options.labels or ""),
        "skipped_paths": np.array([s.path for s in cache.skipped], dtype=str),
        "skipped_reasons": np.array([s.reason for s in cache.skipped], dtype=str),
    }


def sliding_weights(
    cache: AudioCache, cfg: Config, clip_index: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """Real samples in each sliding chunk (rows by ``clip_index`` into ``cache.clips``, ``start``
    in samples): the chunk length, less the zero padding at the end of a record.
    """
    length = model_input_length(cfg)
    step = max(1, int(round(audio_cache.RECORD_SECONDS * cache.sample_rate)))
    valid = np.empty(len(start), np.int64)
    for row, (i, s) in enumerate(zip(clip_index.tolist(), start.tolist())):
        clip = cache.clips[i]
        pieces = _piece_lengths(clip.num_samples, clip.records, cache.sample_rate)
        record = min(int(s) // step, len(pieces) - 1)
        valid[row] = max(1, min(length, pieces[record] - (int(s) - record * step)))
    return valid


def pool_rows(
    payload: dict[str, Any], how: str, weights: np.ndarray | None = None
) -> dict[str, Any]:
    """One row per file: the mean (or mean and std) of its rows, weighted by `weights`
    (the real samples of sliding chunks; ``None``: all rows alike); crop_start becomes 0.
    """
    index = payload["clip_index"]
    _, features, first = pool_groups(payload["embeddings"], index, weights, how)
    out = {k: v for k, v in payload.items() if k not in ("frames", "frame_times")}
    for key in ("paths", "labels", "clip_index"):
        out[key] = payload[key][first]
    out["embeddings"] = features
    out["crop_start"] = np.zeros(len(first), np.float32)
    return out


def extract(cfg: Config, model: Any, options: ExtractOptions, pool: str = "none") -> dict[str, Any]:
    """`cpc_tf extract`: cache → crops → embeddings → embeddings.npz (written atomically).

    Returns the arrays written. Undecodable files are listed in ``skipped_paths`` /
    ``skipped_reasons``; every decodable file has at least one row (exactly one with
    ``pool`` ``mean`` or ``mean_std``, which pools each file's crop embeddings).
    """
    from cpc_tf.evaluation.embeddings import save_embeddings

    cache, label_source = _prepare(cfg, options, cfg.data.sample_rate)
    stage = "extract: trained model" if options.run_dir else "extract: random init"
    arrays = extract_embeddings(model, cfg, cache, progress=options.progress, stage=stage)
    position = {c.clip_id: i for i, c in enumerate(cache.clips)}
    clip_index = np.array([position[int(c)] for c in arrays["clip_id"]], np.int64)
    order = np.lexsort((arrays["start"], clip_index))  # by file, then by crop start
    clip_index, start = clip_index[order], arrays["start"][order]
    missing = sorted(set(range(len(cache.clips))) - set(clip_index.tolist()))
    if missing:  # cannot happen by construction; a guard so that no file vanishes silently
        names = ", ".join(cache.clips[i].path for i in missing[:5])
        raise DataError(f"extraction produced no crop for {len(missing)} file(s): {names}")
    payload = _payload(
        cache,
        label_source,
        options,
        arrays["embeddings"][order],
        clip_index,
        start / cfg.data.sample_rate,
        os.path.abspath(options.run_dir) if options.run_dir else "random-init",
        f"{cfg.name} ({cfg.model.family}, {cfg.model.encoder})",
        dump_config(cfg),
    )
    if "frames" in arrays:
        payload["frames"] = arrays["frames"][order]
        payload["frame_times"] = arrays["frame_times"]
    if pool != "none":
        weights = (
            sliding_weights(cache, cfg, clip_index, start)
            if cfg.eval.crop_mode == "sliding"
            else None
        )
        payload = pool_rows(payload, pool, weights)
    save_embeddings(options.out, **payload)
    if options.tensorboard:
        from cpc_tf.projector import write_projector

        crop_seconds = None if pool != "none" else model_input_length(cfg) / cfg.data.sample_rate
        write_projector(
            options.tensorboard,
            payload["embeddings"],
            payload["paths"],
            payload["labels"],
            payload["crop_start"],
            crop_seconds,
        )
    return payload


def extract_features(cfg: Config, options: ExtractOptions, kind: str = "mfcc") -> dict[str, Any]:
    """`cpc_tf extract --features mfcc|logmel`: hand-crafted statistics, one row per file.

    See :mod:`cpc_tf.features`. The folder is decoded into a cache at the features' own
    rate (22,050 Hz), so the reference does not depend on the model's sample rate.
    """
    from cpc_tf.evaluation.embeddings import save_embeddings
    from cpc_tf.features import FEATURES, FeatureSpec, file_statistics

    if kind not in FEATURES:
        raise ConfigError(f"--features {kind!r}: expected one of {', '.join(FEATURES)}")
    spec = FeatureSpec(kind)
    cache, label_source = _prepare(cfg, options, spec.sample_rate)
    stats = file_statistics(cache, spec, progress=options.progress)
    clip_index = np.arange(len(cache.clips), dtype=np.int64)
    rows = (
        np.stack([stats[c.clip_id] for c in cache.clips])
        if cache.clips
        else np.zeros((0, 1), np.float32)
    )
    payload = _payload(
        cache,
        label_source,
        options,
        rows,
        clip_index,
        np.zeros(len(clip_index)),
        f"features:{kind}",
        f"{kind} statistics: {spec.describe()}",
        "",
    )
    save_embeddings(options.out, **payload)
    if options.tensorboard:
        from cpc_tf.projector import write_projector

        write_projector(
            options.tensorboard,
            payload["embeddings"],
            payload["paths"],
            payload["labels"],
            payload["crop_start"],
            None,
        )
    return payload
