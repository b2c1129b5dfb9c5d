"""`cpc_tf train`: check the data, fill the run folder, run the loop, save the model."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from cpc_tf.config import Config, dump_config
from cpc_tf.errors import ConfigError, TrainingError
from cpc_tf.fileio import atomic_write, atomic_write_text, remove_stale_temps
from cpc_tf.training.callbacks import _callbacks
from cpc_tf.training.distribute import (
    _PEER_ERRORS,
    _peer_failure,
    is_chief,
    make_strategy,
    task_name,
    worker_count,
)
from cpc_tf.training.export import export_savedmodel
from cpc_tf.training.loop import FitResult, Trainer
from cpc_tf.training.optim import compile_model
from cpc_tf.training.run_folder import RunFolder, truncate_history


# ------------------------------------------------------------------ train command
@dataclass
class TrainOptions:
    """Everything `cpc_tf train` needs beyond the config."""

    run_dir: str
    audio_dir: str | None = None
    resume: bool = False
    cache_dir: str | None = None
    labels: str | None = None  # label source of a supervised run (default data.labels)
    epochs: int | None = None
    verbose: int = 1
    # Debugging aid for multi-worker runs (env CPC_TF_WORKER_WEIGHTS_DIR in the CLI):
    # every worker, chief included, writes its final weights (optimizer state included)
    # to DIR/<task>.weights.h5, e.g. worker_0 and worker_1, so they can be compared.
    worker_weights_dir: str | None = None


def _supervised_labels(cfg: Config, cache: Any, split: Any, spec: str | None, audio_dir: str
                       ) -> tuple[list[str], dict[int, int]]:
    """Classes and clip id → class index for ``train.supervised`` (single-label only)."""
    from cpc_tf.audio.labels import parse_label_source

    source = parse_label_source(spec or cfg.data.labels, audio_dir)
    by_clip = {c.clip_id: lab for c, lab in zip(cache.clips, source.labels_for(c.path for c in cache.clips))}
    train_labels = {by_clip[i] for i in split.train if by_clip[i]}
    if any(";" in lab for lab in train_labels):
        raise ConfigError("train.supervised trains a single-label classifier, but the labels of "
                          f"{source.spec!r} hold several tags per file")
    if len(train_labels) < 2:
        found = f"only {sorted(train_labels)[0]!r}" if train_labels else "no labelled file"
        raise ConfigError(f"train.supervised needs at least two classes among the training files; "
                          f"{source.spec!r} gives {found} (set --labels folder|regex:PATTERN|csv:PATH)")
    classes = sorted(train_labels)
    index = {c: i for i, c in enumerate(classes)}
    return classes, {cid: index[lab] for cid, lab in by_clip.items() if lab in index}


def _describe_nan(run: RunFolder, completed: int) -> str:
    last = (os.path.join(run.checkpoint_dir, f"epoch_{completed:03d}.weights.h5") if completed
            else "none (no epoch had completed)")
    return (f"training stopped: the loss became NaN/Inf during epoch {completed + 1}. "
            f"Last good checkpoint: {last}. Lower train.learning_rate (or set train.clipnorm) "
            f"and continue with --resume.")


def train(cfg: Config, options: TrainOptions, model: keras.Model | None = None,
          strategy: tf.distribute.Strategy | None = None,
          extra_callbacks: list[keras.callbacks.Callback] | None = None) -> FitResult:
    """`cpc_tf train`: build or reuse the cache, then train into the run folder.

    `model` and `strategy` may be given (Keras Tuner builds the model itself under its
    strategy); `extra_callbacks` are driven with the standard ones.
    """
    from cpc_tf.audio.cache import open_cache
    from cpc_tf.audio.datasets import (
        check_data_fits,
        labelled_crops,
        split_clips,
        training_dataset,
    )
    from cpc_tf.models.registry import check_fits, check_queue_fits, model_input_shape

    run = RunFolder(options.run_dir)
    strategy = strategy or make_strategy(cfg.train.strategy)
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.train.batch_size
    if global_batch % replicas:
        raise ConfigError(f"train.batch_size={global_batch} does not divide across {replicas} replicas; "
                          f"use a multiple of {replicas}")
    if global_batch // replicas < 1:
        raise ConfigError(f"train.batch_size={global_batch} leaves no example per replica")
    check_fits(cfg)

    if chief:
        run.ensure_writable()  # fail before a long cache build, not after it
    audio_dir = options.audio_dir
    cache = open_cache(audio_dir, cfg.data.sample_rate, cache_dir=options.cache_dir or cfg.data.cache_dir or None,
                       workers=cfg.data.decode_workers, progress=options.verbose > 0 and chief,
                       min_shards=cfg.data.min_shards, shard_seconds=cfg.data.shard_seconds)
    split = split_clips(cache, cfg)
    input_shape = model_input_shape(cfg)
    check_data_fits(cfg, cache, input_shape)
    if cfg.model.family == "cpc":
        check_queue_fits(cfg, len(split.train))
    classes, clip_labels = (_supervised_labels(cfg, cache, split, options.labels, audio_dir)
                            if cfg.train.supervised else (None, {}))
    if options.verbose:
        print(f"cpc_tf: {cache.summary()}")
        print(f"cpc_tf: {split.describe()}; {replicas} replica(s), global batch {global_batch}")
    if len(split.train) < global_batch and options.verbose:
        print(f"cpc_tf: warning: only {len(split.train)} training files for a batch of {global_batch}; "
              "some batches repeat a file, which makes some negatives identical to the positive")
    steps = cfg.train.steps_per_epoch or max(1, len(split.train) // global_batch)
    val_steps = 0
    if split.validation:
        val_steps = cfg.train.validation_steps or max(1, len(split.validation) // global_batch)
    if chief:
        # The full resolved config goes to disk before the first step (SPEC §4), once the
        # data has been checked: a start that fails on a bad folder leaves no half run.
        atomic_write_text(run.config_path, dump_config(cfg))
        run.write_state(audio_dir=os.path.abspath(audio_dir), cache=cache.root, status="training",
                        train_files=len(split.train), validation_files=len(split.validation),
                        steps_per_epoch=steps, replicas=replicas, started=time.time(),
                        **({"classes": classes} if classes else {}))

    def dataset_fn(ctx: tf.distribute.InputContext, epoch: int, training: bool) -> tf.data.Dataset:
        ids = split.train if training else split.validation
        batch = ctx.get_per_replica_batch_size(global_batch)
        if cfg.train.supervised:
            ids = [i for i in ids if i in clip_labels]
            return labelled_crops(cache, cfg, ids, clip_labels, batch, training=training, epoch=epoch,
                                  input_context=ctx, input_shape=input_shape)
        return training_dataset(cache, cfg, ids, batch, training=training, epoch=epoch,
                                input_context=ctx, input_shape=input_shape)

    model = model or compile_model(cfg, strategy, total_steps=steps * cfg.train.epochs, classes=classes)

    scratch = tempfile.mkdtemp(prefix="cpc_tf_worker_") if not chief else ""
    try:
        callbacks, backup = _callbacks(run, chief, scratch)
        callbacks += list(extra_callbacks or []) + [backup]
        done = backup.completed_epochs() if chief else 0
        if chief and options.resume:
            truncate_history(run.history_path, done)
            for folder in (run.root, run.checkpoint_dir):  # debris of a kill -9 mid-write
                remove_stale_temps(folder)
        trainer = Trainer(model, strategy, dataset_fn, jit_compile=cfg.train.jit_compile)
        try:
            result = trainer.fit(cfg.train.epochs, steps, callbacks, validation_steps=val_steps,
                                 verbose=options.verbose if chief else 0)
        except _PEER_ERRORS as exc:
            if worker_count(strategy) == 1:
                raise
            if chief:
                run.write_state(status="stopped: lost a worker", epochs_completed=backup.completed_epochs())
            raise _peer_failure(exc) from None
        if result.stopped_on_nan:
            if chief:
                run.write_state(status="stopped: NaN loss", epochs_completed=result.epochs_completed)
            raise TrainingError(_describe_nan(run, result.epochs_completed))
        if options.worker_weights_dir:
            path = os.path.join(options.worker_weights_dir, f"{task_name(strategy)}.weights.h5")
            atomic_write(lambda p: model.save_weights(p), path)
        if chief:
            atomic_write(lambda p: model.save(p), run.model_path)
            atomic_write(lambda p: model.encoder.save(p), run.encoder_path)
            run.write_state(status="finished", epochs_completed=result.epochs_completed, finished=time.time())
            if cfg.train.export_savedmodel:
                try:
                    export_savedmodel(model, run.saved_model_path)
                except (OSError, ValueError, tf.errors.OpError) as exc:
                    raise TrainingError(f"training finished and {run.model_path} is saved, but exporting the "
                                        f"SavedModel to {run.saved_model_path} failed: {exc}") from None
        return result
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

