"""`cpc_tf train`: check the data, fill the run folder, run the loop, save the model.

Every way a run can stop leaves run.json saying so, with the epochs completed (the
backup's count, what --resume continues from): ``finished``; ``interrupted`` (Ctrl-C);
``failed`` with a one-line ``reason`` (a full disk, an error); ``stopped: NaN loss``;
``stopped: lost a worker``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from cpc_tf.config import Config, dump_config
from cpc_tf.errors import ConfigError, DiskSpaceError, TrainingError
from cpc_tf.fileio import atomic_write, atomic_write_text, remove_stale_temps
from cpc_tf.training.callbacks import (
    AtomicBackupAndRestore,
    completed_epochs,
    standard_callbacks,
)
from cpc_tf.training.disk import check_free_space, estimate_bytes, is_disk_full
from cpc_tf.training.distribute import (
    PEER_ERRORS,
    is_chief,
    make_strategy,
    peer_failure,
    task_name,
    worker_count,
)
from cpc_tf.training.export import export_savedmodel
from cpc_tf.training.loop import FitResult, Trainer
from cpc_tf.training.optim import compile_model
from cpc_tf.training.run_folder import RunFolder, fixed_settings, truncate_history


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
    force: bool = False  # train into a non-empty folder that is not a cpc_tf run


@dataclass
class _Data:
    """The checked training data: cache, split, input shape, labels and step counts."""

    cache: Any
    split: Any
    input_shape: tuple[int, ...]
    steps: int
    val_steps: int
    classes: list[str] | None = None
    clip_labels: dict[int, int] = field(default_factory=dict)


def train(
    cfg: Config,
    options: TrainOptions,
    model: keras.Model | None = None,
    strategy: tf.distribute.Strategy | None = None,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
) -> FitResult:
    """`cpc_tf train`: build or reuse the cache, then train into the run folder.

    `model` and `strategy` may be given (Keras Tuner builds the model itself under its
    strategy); `extra_callbacks` are driven with the standard ones.
    """
    from cpc_tf.models.registry import check_fits

    run = RunFolder(options.run_dir)
    strategy = strategy or make_strategy(cfg.train.strategy)
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    _check_batch(cfg.train.batch_size, replicas)
    check_fits(cfg)
    if chief:  # fail before a long cache build, not after it
        run.check_target(options.resume, options.force)
        if options.resume:
            run.check_resume_config(cfg)
        run.ensure_writable()
    data = _prepare_data(cfg, options, chief, replicas)
    if chief:
        _start_run(run, cfg, options, data, replicas)
    model = model or compile_model(
        cfg, strategy, total_steps=data.steps * cfg.train.epochs, classes=data.classes
    )
    scratch = tempfile.mkdtemp(prefix="cpc_tf_worker_") if not chief else ""
    try:
        return _run(cfg, options, run, model, strategy, data, scratch, extra_callbacks)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _check_batch(global_batch: int, replicas: int) -> None:
    if global_batch % replicas:
        raise ConfigError(
            f"train.batch_size={global_batch} does not divide across {replicas} replicas; "
            f"use a multiple of {replicas}"
        )
    if global_batch // replicas < 1:
        raise ConfigError(f"train.batch_size={global_batch} leaves no example per replica")


def _prepare_data(cfg: Config, options: TrainOptions, chief: bool, replicas: int) -> _Data:
    """Open (or build) the cache, split it, check the crop fits, count the steps."""
    if options.audio_dir is None:
        raise ConfigError("train needs --audio-dir (a resumed run takes it from run.json)")
    audio_dir = options.audio_dir
    from cpc_tf.audio.cache import open_cache_for
    from cpc_tf.audio.datasets import check_data_fits, short_clip_note, split_clips
    from cpc_tf.models.registry import check_queue_fits, model_input_shape

    cache = open_cache_for(
        cfg, audio_dir, cache_dir=options.cache_dir, progress=options.verbose > 0 and chief
    )
    split = split_clips(cache, cfg)
    input_shape = tuple(model_input_shape(cfg))
    check_data_fits(cfg, cache, input_shape)
    if cfg.model.family == "cpc":
        check_queue_fits(cfg, len(split.train))
    classes, clip_labels = (
        _supervised_labels(cfg, cache, split, options.labels, audio_dir)
        if cfg.train.supervised
        else (None, {})
    )
    batch = cfg.train.batch_size
    steps = cfg.train.steps_per_epoch or max(1, len(split.train) // batch)
    val_steps = (
        (cfg.train.validation_steps or max(1, len(split.validation) // batch))
        if split.validation
        else 0
    )
    if options.verbose:
        print(f"cpc_tf: {cache.summary()}")
        print(f"cpc_tf: {split.describe()}; {replicas} replica(s), global batch {batch}")
        if len(split.train) < batch:
            print(
                f"cpc_tf: warning: only {len(split.train)} training files for a batch of {batch}; "
                "some batches repeat a file, which makes some negatives identical to the positive"
            )
        note = short_clip_note(cfg, cache, split.train, input_shape)
        if note:
            print(f"cpc_tf: warning: {note}")
    return _Data(cache, split, input_shape, steps, val_steps, classes, clip_labels)


def _supervised_labels(
    cfg: Config, cache: Any, split: Any, spec: str | None, audio_dir: str
) -> tuple[list[str], dict[int, int]]:
    """Classes and clip id → class index for ``train.supervised`` (single-label only)."""
    from cpc_tf.audio.labels import parse_label_source

    source = parse_label_source(spec or cfg.data.labels, audio_dir)
    by_clip = {
        c.clip_id: lab
        for c, lab in zip(cache.clips, source.labels_for(c.path for c in cache.clips))
    }
    train_labels = {by_clip[i] for i in split.train if by_clip[i]}
    if any(";" in lab for lab in train_labels):
        raise ConfigError(
            "train.supervised trains a single-label classifier, but the labels of "
            f"{source.spec!r} hold several tags per file"
        )
    if len(train_labels) < 2:
        found = f"only {sorted(train_labels)[0]!r}" if train_labels else "no labelled file"
        raise ConfigError(
            f"train.supervised needs at least two classes among the training files; "
            f"{source.spec!r} gives {found} (set --labels folder|regex:PATTERN|csv:PATH)"
        )
    classes = sorted(train_labels)
    index = {c: i for i, c in enumerate(classes)}
    return classes, {cid: index[lab] for cid, lab in by_clip.items() if lab in index}


def _start_run(
    run: RunFolder, cfg: Config, options: TrainOptions, data: _Data, replicas: int
) -> None:
    """run.json (which marks the folder as a run), then the full resolved config.

    Both go to disk before the first step, once the data has been checked:
    a start that fails on a bad folder leaves no half run. A resumed run keeps its
    original start time.
    """
    started = run.read_state().get("started") if options.resume else None
    run.write_state(
        clear=("reason", "finished", "stopped"),
        audio_dir=os.path.abspath(options.audio_dir or data.cache.audio_dir),
        cache=data.cache.root,
        status="training",
        train_files=len(data.split.train),
        validation_files=len(data.split.validation),
        steps_per_epoch=data.steps,
        replicas=replicas,
        started=started or time.time(),
        fixed_settings=fixed_settings(cfg),
        **({"resumed": time.time()} if options.resume else {}),
        **({"classes": data.classes} if data.classes else {}),
    )
    atomic_write_text(run.config_path, dump_config(cfg))


def _dataset_fn(cfg: Config, data: _Data) -> Any:
    """``(input_context, epoch, training) -> tf.data.Dataset`` over the split's clips."""
    from cpc_tf.audio.datasets import labelled_crops, training_dataset

    def dataset_fn(ctx: tf.distribute.InputContext, epoch: int, training: bool) -> tf.data.Dataset:
        ids = data.split.train if training else data.split.validation
        batch = ctx.get_per_replica_batch_size(cfg.train.batch_size)
        if cfg.train.supervised:
            ids = [i for i in ids if i in data.clip_labels]
            return labelled_crops(
                data.cache,
                cfg,
                ids,
                data.clip_labels,
                batch,
                training=training,
                epoch=epoch,
                input_context=ctx,
                input_shape=data.input_shape,
            )
        return training_dataset(
            data.cache,
            cfg,
            ids,
            batch,
            training=training,
            epoch=epoch,
            input_context=ctx,
            input_shape=data.input_shape,
        )

    return dataset_fn


def _run(
    cfg: Config,
    options: TrainOptions,
    run: RunFolder,
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    data: _Data,
    scratch: str,
    extra_callbacks: list[keras.callbacks.Callback] | None,
) -> FitResult:
    """The loop, then the saved model; run.json records how it ended."""
    chief = not scratch
    if chief and options.resume:
        truncate_history(run.history_path, completed_epochs(run.backup_dir))
        for folder in (run.root, run.checkpoint_dir):  # debris of a kill -9 mid-write
            remove_stale_temps(folder)
    callbacks, backup = standard_callbacks(run, cfg, data.steps, chief, scratch)
    callbacks += [*(extra_callbacks or []), backup]
    done = backup.completed_epochs() if chief else 0
    if chief and options.resume and options.verbose and done < cfg.train.epochs:
        print(f"cpc_tf: resuming at epoch {done + 1} of {cfg.train.epochs}")
    trainer = Trainer(model, strategy, _dataset_fn(cfg, data), jit_compile=cfg.train.jit_compile)
    with _recording_stops(run if chief else None, backup, strategy):
        result = trainer.fit(
            cfg.train.epochs,
            data.steps,
            callbacks,
            validation_steps=data.val_steps,
            verbose=options.verbose if chief else 0,
        )
        if not result.stopped_on_nan:
            _save_models(run if chief else None, model, strategy, options.worker_weights_dir)
    if result.stopped_on_nan:
        if chief:
            _record(run, status="stopped: NaN loss", epochs_completed=result.epochs_completed)
        raise TrainingError(_describe_nan(run, result.epochs_completed))
    if chief:
        run.write_state(
            status="finished", epochs_completed=result.epochs_completed, finished=time.time()
        )
        if cfg.train.export_savedmodel:
            try:
                export_savedmodel(model, run.saved_model_path)
            except (OSError, ValueError, tf.errors.OpError) as exc:
                raise TrainingError(
                    f"training finished and {run.model_path} is saved, but exporting the "
                    f"SavedModel to {run.saved_model_path} failed: {exc}"
                ) from None
    return result


def _save_models(
    run: RunFolder | None,
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    worker_weights_dir: str | None,
) -> None:
    """model.keras and encoder.keras (the chief, `run` given), and the worker's debug weights."""
    if worker_weights_dir:
        path = os.path.join(worker_weights_dir, f"{task_name(strategy)}.weights.h5")
        atomic_write(lambda p: model.save_weights(p), path)
    if run is None:
        return
    check_free_space(
        run.root, 2 * estimate_bytes(model, run.model_path), "model.keras and encoder.keras"
    )
    atomic_write(lambda p: model.save(p), run.model_path)
    atomic_write(lambda p: model.encoder.save(p), run.encoder_path)


def _record(run: RunFolder | None, **state: Any) -> None:
    """Update run.json if this worker writes it; a failing write (a full disk) is not raised."""
    if run is None:
        return
    with contextlib.suppress(OSError):
        run.write_state(**state)


@contextlib.contextmanager
def _recording_stops(
    run: RunFolder | None, backup: AtomicBackupAndRestore, strategy: tf.distribute.Strategy
) -> Iterator[None]:
    """Record in run.json why training stopped, and turn a full disk or a lost peer into one
    line.
    """
    try:
        yield
    except KeyboardInterrupt:
        _record(
            run,
            status="interrupted",
            epochs_completed=backup.completed_epochs(),
            stopped=time.time(),
        )
        raise
    except PEER_ERRORS as exc:
        if worker_count(strategy) == 1:
            _record(
                run,
                status="failed",
                reason=_one_line(exc),
                epochs_completed=backup.completed_epochs(),
            )
            raise
        _record(run, status="stopped: lost a worker", epochs_completed=backup.completed_epochs())
        raise peer_failure(exc) from None
    except Exception as exc:
        done = backup.completed_epochs()
        error = (
            _disk_error(exc, run, done)
            if isinstance(exc, DiskSpaceError) or is_disk_full(exc)
            else exc
        )
        _record(
            run,
            status="failed",
            reason=_one_line(error),
            epochs_completed=done,
            stopped=time.time(),
        )
        if error is exc:
            raise
        raise error from None


def _disk_error(exc: BaseException, run: RunFolder | None, done: int) -> DiskSpaceError:
    """One line for a full disk: what failed, what is kept, how to continue."""
    what = (
        str(exc)
        if isinstance(exc, DiskSpaceError)
        else f"the disk is full ({getattr(exc, 'filename', None) or 'while writing'})"
    )
    where = run.root if run is not None else "RUN_DIR"
    return DiskSpaceError(
        f"{what}; {done} completed epoch(s) are kept: free some space, then continue with: "
        f"{resume_command(where)}"
    )


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


def resume_command(run_dir: str) -> str:
    """The command that continues the run in `run_dir`."""
    return f"cpc_tf train --out {shlex.quote(run_dir)} --resume"


def interrupted_message(run_dir: str, epochs_completed: int) -> str:
    """The line that ends a run stopped with Ctrl-C."""
    when = (
        f"after epoch {epochs_completed}"
        if epochs_completed
        else "before the first epoch completed"
    )
    return f"interrupted {when}; resume with: {resume_command(run_dir)}"


def _describe_nan(run: RunFolder, completed: int) -> str:
    last = (
        os.path.join(run.checkpoint_dir, f"epoch_{completed:03d}.weights.h5")
        if completed
        else "none (no epoch had completed)"
    )
    return (
        f"training stopped: the loss became NaN/Inf during epoch {completed + 1}. "
        f"Last good checkpoint: {last}. Lower train.learning_rate (or set train.clipnorm) "
        f"and continue with --resume."
    )
