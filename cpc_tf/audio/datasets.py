"""tf.data builders over the decoded cache: CPC windows, SimCLR view pairs, eval crops.

Everything after the cache is TensorFlow ops: shard files are interleaved in parallel,
each record (a clip, or a ≤10-minute piece of a long one) is cropped as soon as it is
parsed, so shuffle buffers hold crops, never whole recordings, and memory stays flat
however large the folder. Randomness is stateless and derived from (seed, epoch,
input pipeline, element index), so a run is reproducible, a resumed epoch draws what it
would have, and two workers never draw the same crops or augmentations.

Negatives are not loaded here: each batch's other examples are the negatives (in-batch
negatives: every clip is loaded and decoded once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from cpc_tf.audio.cache import RECORD_SECONDS, AudioCache, parse_record
from cpc_tf.config import Config
from cpc_tf.errors import ConfigError, DataError

AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class ClipSplit:
    """Clip ids of the training and validation files, and the files left out as too short."""

    train: list[int]
    validation: list[int]
    too_short: list[str]

    def describe(self) -> str:
        parts = [f"{len(self.train)} training files"]
        if self.validation:
            parts.append(f"{len(self.validation)} validation files")
        if self.too_short:
            parts.append(
                f"{len(self.too_short)} skipped as shorter than data.min_clip_fraction of a crop"
            )
        return ", ".join(parts)


def _unit_hash(text: str, seed: int) -> float:
    digest = hashlib.sha1(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_clips(cache: AudioCache, cfg: Config) -> ClipSplit:
    """Split the cache's files into training and validation sets, by file.

    The split is a deterministic hash of each relative path, so it is stable across
    runs, machines and incremental cache updates. Files shorter than
    ``data.min_clip_fraction`` of a crop are left out and counted.
    """
    crop = cfg.crop_samples
    min_len = max(1, int(round(cfg.data.min_clip_fraction * crop)))
    train, val, short = [], [], []
    for clip in cache.clips:
        if clip.num_samples < min_len:
            short.append(clip.path)
            continue
        if (
            cfg.data.validation_fraction > 0
            and _unit_hash(clip.path, cfg.data.seed) < cfg.data.validation_fraction
        ):
            val.append(clip.clip_id)
        else:
            train.append(clip.clip_id)
    if not train:
        if short:
            raise DataError(
                f"all {len(short)} files are shorter than data.min_clip_fraction="
                f"{cfg.data.min_clip_fraction} of a {crop}-sample crop; lower the fraction "
                f"or data.clip_seconds"
            )
        raise DataError(
            "no training files left after the validation split; lower data.validation_fraction"
        )
    if cfg.data.validation_fraction > 0 and not val:
        val.append(train.pop())  # at least one validation file when validation is asked for
    return ClipSplit(train, val, short)


# ------------------------------------------------------------------ shared stages
def _stream_key(*parts: object) -> int:
    """A non-negative int63 key hashed from its parts (seeds never collide by arithmetic)."""
    digest = hashlib.sha1(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _pipeline(input_context: tf.distribute.InputContext | None) -> tuple[int, int]:
    """(number of input pipelines, this pipeline's id)."""
    if input_context is None:
        return 1, 0
    return int(input_context.num_input_pipelines), int(input_context.input_pipeline_id)


def _records(
    cache: AudioCache,
    clip_ids: Sequence[int],
    crop_len: int,
    shuffle: bool,
    key: int,
    input_context: tf.distribute.InputContext | None,
) -> tf.data.Dataset:
    """Parsed records of the given clips, shard files interleaved in parallel.

    Sharding across input pipelines (one per worker) is by shard file when there are at
    least as many files as pipelines, else by record after the clip filter; when even
    the records are fewer than the pipelines every pipeline reads them all (its crops
    still differ, their seeds include the pipeline id). Sharding never leaves a
    pipeline empty, which would make the endless stream after it spin forever.

    The short last piece of a clip that the cache cut into several records is dropped
    when it is shorter than a crop: cropping from the other pieces beats looping it.
    """
    ids = sorted(set(int(c) for c in clip_ids))
    files = cache.shard_paths_for(ids)
    if not files:
        raise DataError("the cache holds no shard for the selected files")
    pipelines, pipeline_id = _pipeline(input_context)
    by_file = pipelines > 1 and len(files) >= pipelines
    by_record = (
        pipelines > 1 and not by_file and sum(cache.clip(i).records for i in ids) >= pipelines
    )
    ds = tf.data.Dataset.from_tensor_slices(files)
    if by_file:
        # AutoShardPolicy.FILE by hand: each worker reads its own shard files.
        ds = ds.shard(pipelines, pipeline_id)
    n_files = len(files[pipeline_id::pipelines]) if by_file else len(files)
    if shuffle:
        ds = ds.shuffle(n_files, seed=key % 2**31, reshuffle_each_iteration=True)
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(n_files, 8),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    ds = ds.map(parse_record, num_parallel_calls=AUTOTUNE, deterministic=True)
    # clip id -> its length; 0 for the clips not asked for (validation, too short).
    lengths = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(ids, tf.int64),
            tf.constant([cache.clip(i).num_samples for i in ids], tf.int64),
        ),
        default_value=0,
    )
    record_len = max(1, int(round(RECORD_SECONDS * cache.sample_rate)))

    def wanted(record: dict) -> tf.Tensor:
        clip_len = lengths.lookup(record["clip_id"])
        need = tf.minimum(tf.minimum(clip_len, crop_len), record_len)
        return tf.logical_and(clip_len > 0, tf.cast(tf.shape(record["audio"])[0], tf.int64) >= need)

    ds = ds.filter(wanted)
    if by_record:
        ds = ds.shard(pipelines, pipeline_id)
    return ds


def fit_length(audio: tf.Tensor, length: int, policy: str) -> tf.Tensor:
    """Make a clip at least `length` samples long: loop it, or zero-pad at the end.

    A clip that is long enough is returned as it is (no copy); an empty clip becomes
    `length` zeros under either policy.
    """
    n = tf.shape(audio)[0]

    def loop() -> tf.Tensor:
        reps = (length + tf.maximum(n, 1) - 1) // tf.maximum(n, 1)
        return tf.tile(audio, [reps])

    def pad() -> tf.Tensor:
        return tf.pad(audio, [[0, length - n]])

    def short() -> tf.Tensor:
        return tf.cond(n > 0, loop, pad) if policy == "loop" else pad()

    if policy not in ("loop", "pad"):
        raise ConfigError(f"data.short_clip_policy: {policy!r} is not one of 'loop', 'pad'")
    return tf.cond(n >= length, lambda: audio, short)


def random_crop(
    audio: tf.Tensor, length: int, seed: tf.Tensor, policy: str
) -> tuple[tf.Tensor, tf.Tensor]:
    """A random crop of exactly `length` samples (short clips by `policy`) and its start."""
    audio = fit_length(audio, length, policy)
    n = tf.shape(audio)[0]
    start = tf.random.stateless_uniform(
        [], seed=seed, minval=0, maxval=n - length + 1, dtype=tf.int32
    )
    crop = audio[start : start + length]
    return tf.ensure_shape(crop, [length]), start


def _seeds(key: int) -> tf.data.Dataset:
    """An endless stream of stateless seeds ``[key, index]`` (int64 [2])."""
    return tf.data.Dataset.counter().map(lambda i: tf.stack([tf.constant(key, tf.int64), i]))


def _stream_keys(
    cfg: Config, training: bool, epoch: int, input_context: tf.distribute.InputContext | None
) -> dict[str, int]:
    """Independent keys for file shuffling, crop shuffling, crop draws and augmentation.

    Derived from (data.seed, train/validation, epoch, input pipeline): the same config
    gives the same stream, another seed, epoch or worker a different one.
    """
    _, pipeline_id = _pipeline(input_context)
    base = (cfg.data.seed, "train" if training else "validation", epoch, pipeline_id)
    return {name: _stream_key(*base, name) for name in ("files", "shuffle", "crops", "augment")}


def _options(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Pipeline options shared by the training builders.

    Ops inside the map functions run single-threaded: tf.data already runs several
    elements in parallel, and intra-op threads inside them would only fight the
    training step for the same cores.
    """
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1
    options.experimental_optimization.map_parallelization = True
    return ds.with_options(options)


# ------------------------------------------------------------------ public builders
def _crop_length(input_shape: Sequence[int]) -> int:
    """Samples in one model input: ``(T+k, W)`` windows or a ``(n,)`` waveform."""
    n = 1
    for d in input_shape:
        n *= int(d)
    return n


def check_data_fits(cfg: Config, cache: AudioCache, input_shape: Sequence[int]) -> None:
    """Fail at start-up, naming the setting, when the crop cannot come from this data.

    ``input_shape`` is one example as the model takes it (``(T+k, W)`` CPC windows or
    ``(n,)`` samples; :func:`cpc_tf.models.registry.model_input_shape`). With
    ``short_clip_policy: pad`` a crop longer than every file would make every
    training example end in zeros (for CPC: identical, all-zero future windows), so it
    is refused; ``loop`` repeats short files instead and is always accepted.
    """
    longest = max((c.num_samples for c in cache.clips), default=0)
    crop = _crop_length(input_shape)
    if cfg.data.short_clip_policy == "pad" and longest < crop:
        what = _crop_setting(cfg)
        raise ConfigError(
            f"the crop ({what}) is longer than every file (the longest has {longest} "
            f"samples), so with data.short_clip_policy=pad every crop would be padded "
            f"with zeros: shorten the crop or set data.short_clip_policy=loop"
        )


def _crop_setting(cfg: Config) -> str:
    """The setting that fixes the crop length, with its value, for messages."""
    if cfg.data.crop_samples:
        return f"data.crop_samples={cfg.data.crop_samples}"
    return (
        f"data.clip_seconds={cfg.data.clip_seconds:g} at data.sample_rate="
        f"{cfg.data.sample_rate} ({cfg.crop_samples} samples)"
    )


def short_clip_note(
    cfg: Config, cache: AudioCache, clip_ids: Sequence[int], input_shape: Sequence[int]
) -> str | None:
    """A one-line note when most of `clip_ids` are shorter than a crop (looped or padded), else
    None.

    Such crops repeat (or zero-pad) the same audio, which makes the task easier than it
    looks and wastes steps; the note names the fraction and the setting to change.
    """
    crop = _crop_length(input_shape)
    short = sum(1 for i in clip_ids if cache.clip(i).num_samples < crop)
    if not clip_ids or short * 2 <= len(clip_ids):
        return None
    how = "looped" if cfg.data.short_clip_policy == "loop" else "zero-padded"
    return (
        f"{short} of {len(clip_ids)} training files ({100 * short / len(clip_ids):.0f}%) "
        f"are shorter than a crop ({_crop_setting(cfg)}) and are {how} to fill it; "
        "a shorter crop fits this data better"
    )


def _crops(
    cache: AudioCache,
    cfg: Config,
    clip_ids: Sequence[int],
    batch_size: int,
    training: bool,
    epoch: int,
    input_context: tf.distribute.InputContext | None,
    input_shape: Sequence[int],
    labels: Mapping[int, int] | None,
) -> tf.data.Dataset:
    """One random crop per record and pass, shaped ``input_shape``; ``(crop, class)`` with
    labels.
    """
    shape = [int(d) for d in input_shape]
    crop_len = _crop_length(shape)
    policy = cfg.data.short_clip_policy
    keys = _stream_keys(cfg, training, epoch, input_context)
    ds = _records(
        cache, clip_ids, crop_len, shuffle=training, key=keys["files"], input_context=input_context
    )
    ds = ds.repeat()  # the engine takes a fixed number of steps, also for validation
    ds = tf.data.Dataset.zip((ds, _seeds(keys["crops"])))
    table = None
    if labels is not None:
        ids = sorted(labels)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(ids, tf.int64), tf.constant([labels[i] for i in ids], tf.int32)
            ),
            default_value=-1,
        )

    def crop(record: dict, s: tf.Tensor) -> Any:
        x, _ = random_crop(record["audio"], crop_len, s, policy)
        x = tf.reshape(x, shape)
        return x if table is None else (x, table.lookup(record["clip_id"]))

    ds = ds.map(crop, num_parallel_calls=AUTOTUNE, deterministic=True)
    if training:
        ds = ds.shuffle(cfg.data.shuffle_buffer, seed=keys["shuffle"] % 2**31)
    return _options(ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE))


def labelled_crops(
    cache: AudioCache,
    cfg: Config,
    clip_ids: Sequence[int],
    labels: Mapping[int, int],
    batch_size: int,
    training: bool = True,
    epoch: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    *,
    input_shape: Sequence[int],
) -> tf.data.Dataset:
    """Batches of ``(crops, class index)`` for supervised training (``train.supervised``).

    ``labels`` maps clip id → class index; every id in ``clip_ids`` must have one.
    Crops are cut as for CPC (see :func:`cpc_windows`).
    """
    missing = [i for i in clip_ids if i not in labels]
    if missing:
        raise DataError(f"{len(missing)} training file(s) have no label for supervised training")
    return _crops(
        cache, cfg, clip_ids, batch_size, training, epoch, input_context, input_shape, labels
    )


def cpc_windows(
    cache: AudioCache,
    cfg: Config,
    clip_ids: Sequence[int],
    batch_size: int,
    training: bool = True,
    epoch: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    *,
    input_shape: Sequence[int],
) -> tf.data.Dataset:
    """Batches for CPC: ``[B, T+k, W]`` windows (window mode) or ``[B, crop]`` (sequence mode).

    ``input_shape`` is one example as the model takes it (see :func:`check_data_fits`).
    One random crop of that many samples per record and pass, reshaped into T+k
    windows when the shape has two axes (Bajorath et al. 2021, §2.2.1: 4 s at 4410 Hz = 30 windows
    of 588). Endless: the engine takes a fixed number of steps.
    """
    return _crops(
        cache, cfg, clip_ids, batch_size, training, epoch, input_context, input_shape, None
    )


def simclr_views(
    cache: AudioCache,
    cfg: Config,
    clip_ids: Sequence[int],
    batch_size: int,
    training: bool = True,
    epoch: int = 0,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Batches of view pairs ``([B, n], [B, n])`` for SimCLR (Spijkervet & Burgoyne 2021, §3.1-3.2).

    Two independent random crops of ``crop_samples`` (59,049 at 22,050 Hz) per clip;
    with ``augment.where: pipeline`` each view gets its own draw of the chain here,
    vectorised over the batch.
    """
    n = cfg.crop_samples
    policy = cfg.data.short_clip_policy
    keys = _stream_keys(cfg, training, epoch, input_context)
    ds = _records(
        cache, clip_ids, n, shuffle=training, key=keys["files"], input_context=input_context
    )
    ds = ds.repeat()  # the engine takes a fixed number of steps, also for validation
    ds = tf.data.Dataset.zip((ds, _seeds(keys["crops"])))

    def two_crops(record: dict, s: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        s1 = tf.random.experimental.stateless_fold_in(s, 1)
        s2 = tf.random.experimental.stateless_fold_in(s, 2)
        v1, _ = random_crop(record["audio"], n, s1, policy)
        v2, _ = random_crop(record["audio"], n, s2, policy)
        return v1, v2

    ds = ds.map(two_crops, num_parallel_calls=AUTOTUNE, deterministic=True)
    if training:
        ds = ds.shuffle(max(8, min(cfg.data.shuffle_buffer, 256)), seed=keys["shuffle"] % 2**31)
    ds = ds.batch(batch_size, drop_remainder=True)
    if (
        training
        and cfg.augment.enabled
        and cfg.augment.where == "pipeline"
        and cfg.augment.chain == "waveform"
    ):
        from cpc_tf.dsp.augment import augment_batch

        aug_cfg, rate = cfg.augment, cfg.data.sample_rate
        ds = tf.data.Dataset.zip((ds, _seeds(keys["augment"])))

        def augment(
            views: tuple[tf.Tensor, tf.Tensor], s: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor]:
            v1, v2 = views
            a1 = augment_batch(v1, aug_cfg, rate, tf.random.experimental.stateless_fold_in(s, 1))
            a2 = augment_batch(v2, aug_cfg, rate, tf.random.experimental.stateless_fold_in(s, 2))
            return a1, a2

        ds = ds.map(augment, num_parallel_calls=AUTOTUNE, deterministic=True)
    return _options(ds.prefetch(AUTOTUNE))


def training_dataset(
    cache: AudioCache,
    cfg: Config,
    clip_ids: Sequence[int],
    batch_size: int,
    training: bool = True,
    epoch: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    *,
    input_shape: Sequence[int],
) -> tf.data.Dataset:
    """The right builder for the config's model family (``input_shape``: one CPC example)."""
    if cfg.model.family == "cpc":
        return cpc_windows(
            cache,
            cfg,
            clip_ids,
            batch_size,
            training=training,
            epoch=epoch,
            input_context=input_context,
            input_shape=input_shape,
        )
    return simclr_views(
        cache,
        cfg,
        clip_ids,
        batch_size,
        training=training,
        epoch=epoch,
        input_context=input_context,
    )
