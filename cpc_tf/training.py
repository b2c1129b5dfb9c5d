"""The training engine: one custom loop for every tf.distribute strategy.

Keras 3's ``model.fit`` fails under MultiWorkerMirroredStrategy (keras#20585, SPEC §4),
so cpc_tf drives training itself: ``strategy.run(model.train_step)`` over
``strategy.distribute_datasets_from_function``, with the standard Keras callbacks
(ModelCheckpoint, BackupAndRestore, TensorBoard, CSVLogger, TerminateOnNaN and the
progress bar) called by the loop exactly as ``fit`` would call them. The same path
serves no strategy, MirroredStrategy (GPUs or logical CPUs) and multi-worker.

The run folder (ARCHITECTURE.md, "Run folder") is written as::

    RUN_DIR/config.yaml        full resolved config, before the first step
    RUN_DIR/run.json           audio folder, cache, status, epochs completed
    RUN_DIR/model.keras        final model;  RUN_DIR/encoder.keras  the encoder alone
    RUN_DIR/checkpoints/       per-epoch weights + backup/ (BackupAndRestore state)
    RUN_DIR/history.csv        per-epoch loss and metrics;  RUN_DIR/tensorboard/
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from cpc_tf.callbacks import AtomicBackupAndRestore, AtomicModelCheckpoint
from cpc_tf.fileio import atomic_write, atomic_write_text, remove_stale_temps
from cpc_tf.config import Config, dump_config, from_dict, read_yaml
from cpc_tf.errors import ConfigError, DataError, TrainingError

CONFIG_FILE = "config.yaml"
STATE_FILE = "run.json"


# ------------------------------------------------------------------ strategies
def logical_cpu_devices() -> list[str]:
    """Names of the logical CPU devices (more than one only when configured so)."""
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for ``--strategy``.

    ``auto`` picks MirroredStrategy when more than one GPU is visible, else the default
    (single-device) strategy. ``mirrored`` uses every GPU, or, on a CPU-only machine,
    every logical CPU device: set ``CPC_TF_LOGICAL_CPUS=N`` to split the CPU into N for
    a trial (tests split it in two themselves). ``multiworker`` reads TF_CONFIG, and
    CPC_TF_COLLECTIVE_TIMEOUT (seconds, default 600) bounds every collective.
    """
    if name == "multiworker":
        # Checked before anything lists logical devices: that initialises TensorFlow's
        # context, after which MultiWorkerMirroredStrategy can no longer configure its
        # collective ops ("Collective ops must be configured at program startup").
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("--strategy multiworker needs the TF_CONFIG environment variable "
                              "(see tutorial.md, 'Several machines'); locally use --workers N, "
                              "or --strategy auto to train in one process")
        timeout = _env_number("CPC_TF_COLLECTIVE_TIMEOUT", 600.0)
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if name == "mirrored" and not tf.config.list_physical_devices("GPU"):
        _split_cpu(int(_env_number("CPC_TF_LOGICAL_CPUS", 0)))
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "none"
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in gpus] if gpus else logical_cpu_devices()
        if len(devices) > 1:
            cross = None if gpus else tf.distribute.ReductionToOneDevice()
            return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross)
        return tf.distribute.MirroredStrategy(devices=devices)
    raise ConfigError(f"unknown strategy {name!r}")


def _env_number(name: str, default: float) -> float:
    """A positive number from the environment variable `name` (`default` when unset)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: expected a positive number")
    return value


def _split_cpu(count: int) -> None:
    """Split the CPU into `count` logical devices (a MirroredStrategy trial without GPUs).

    Only possible before TensorFlow initialises its devices; later (a test that split
    the CPU already, a notebook) the existing logical devices are kept.
    """
    if count < 2:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        pass


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes the run folder (always true on one machine)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if not resolver.cluster_spec().as_dict():
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (not has_chief) and task_type == "worker" and task_id == 0


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """How many processes (chief + workers) train together; 1 without a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("chief", [])) + len(spec.get("worker", [])))


def task_name(strategy: tf.distribute.Strategy) -> str:
    """This process' task in the cluster, e.g. ``worker_1`` (``worker_0`` without one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if worker_count(strategy) == 1 or resolver is None:
        return "worker_0"
    return f"{resolver.task_type}_{int(resolver.task_id or 0)}"


# Errors a collective op raises when another worker died or stopped answering: the
# coordination service's heartbeat check ("tasks are unhealthy"), the collective
# timeout (CPC_TF_COLLECTIVE_TIMEOUT) and the abort that follows either.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                tf.errors.CancelledError)


def _peer_failure(exc: tf.errors.OpError) -> TrainingError:
    """A one-line TrainingError for a worker that lost its peers."""
    lines = [line.strip() for line in str(exc.message).splitlines() if line.strip()]
    keys = ("unhealthy", "aborted", "timed out", "timeout", "deadline", "unavailable", "connect")
    detail = next((line for line in lines if any(k in line.lower() for k in keys)
                   and not line.startswith(("File ", "Detected at node"))), type(exc).__name__)
    return TrainingError(f"lost contact with another worker ({detail}). Completed epochs are kept in "
                         f"the run folder's checkpoints/backup; restart every worker with --resume")


# ------------------------------------------------------------------ run folder
@dataclass
class RunFolder:
    """Paths of a run folder, and its small JSON state file."""

    root: str

    @property
    def config_path(self) -> str:
        return os.path.join(self.root, CONFIG_FILE)

    @property
    def state_path(self) -> str:
        return os.path.join(self.root, STATE_FILE)

    @property
    def model_path(self) -> str:
        return os.path.join(self.root, "model.keras")

    @property
    def encoder_path(self) -> str:
        return os.path.join(self.root, "encoder.keras")

    @property
    def saved_model_path(self) -> str:
        return os.path.join(self.root, "saved_model")

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.root, "checkpoints")

    @property
    def backup_dir(self) -> str:
        return os.path.join(self.checkpoint_dir, "backup")

    @property
    def history_path(self) -> str:
        return os.path.join(self.root, "history.csv")

    @property
    def tensorboard_dir(self) -> str:
        return os.path.join(self.root, "tensorboard")

    def is_run(self) -> bool:
        return os.path.isfile(self.config_path)

    def load_config(self) -> Config:
        if not self.is_run():
            raise DataError(f"{self.root} is not a cpc_tf run folder (no {CONFIG_FILE})")
        return from_dict(read_yaml(self.config_path))

    def read_state(self) -> dict[str, Any]:
        try:
            with open(self.state_path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def write_state(self, **updates: Any) -> None:
        state = self.read_state()
        state.update(updates)
        atomic_write_text(self.state_path, json.dumps(state, indent=2, sort_keys=True))

    def ensure_writable(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test-", delete=True)
            probe.close()
        except OSError as exc:
            raise DataError(f"cannot write the run folder {self.root}: {exc.strerror or exc}") from None


def truncate_history(path: str, keep_epochs: int) -> None:
    """Drop CSV rows of epochs at or after `keep_epochs` (an epoch redone on resume)."""
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and r[0].isdigit() and int(r[0]) < keep_epochs]
    if len(kept) == len(body):
        return

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([header] + kept)

    atomic_write(write, path)


# ------------------------------------------------------------------ optimiser
@keras.saving.register_keras_serializable(package="cpc_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then constant or a cosine decay to 0 at ``total_steps``.

    The cosine follows Loshchilov & Hutter 2017 (SGDR, without restarts), as SimCLR
    (Chen et al. 2020) and CPC_audio train. Past ``total_steps`` the rate stays at 0.
    """

    def __init__(self, peak: float, warmup_steps: int = 0, total_steps: int = 0,
                 kind: str = "constant") -> None:
        if kind not in ("constant", "cosine"):
            raise ValueError(f"unknown learning-rate schedule {kind!r}")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.kind = kind

    def __call__(self, step: Any) -> Any:
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        rate = self.peak * tf.minimum(1.0, (step + 1.0) / warm) if self.warmup_steps else tf.constant(self.peak)
        if self.kind == "cosine" and self.total_steps > self.warmup_steps:
            span = float(self.total_steps - self.warmup_steps)
            progress = tf.clip_by_value((step - float(self.warmup_steps)) / span, 0.0, 1.0)
            rate = rate * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return rate

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "kind": self.kind}


def make_optimizer(cfg: Config, total_steps: int = 0) -> keras.optimizers.Optimizer:
    """The configured optimiser with the configured learning rate (CLMR ignored it; SPEC §2).

    ``total_steps`` (epochs × steps per epoch) is where a cosine schedule reaches 0.
    """
    t = cfg.train
    rate: Any = t.learning_rate
    if t.warmup_steps or t.lr_schedule != "constant":
        rate = WarmupSchedule(t.learning_rate, t.warmup_steps, total_steps, t.lr_schedule)
    kw: dict[str, Any] = {"learning_rate": rate}
    if t.clipnorm > 0:
        kw["clipnorm"] = t.clipnorm
    if t.optimizer == "adam":
        opt = keras.optimizers.Adam(beta_1=t.beta_1, beta_2=t.beta_2,
                                    weight_decay=t.weight_decay or None, **kw)
    elif t.optimizer == "adamw":
        opt = keras.optimizers.AdamW(beta_1=t.beta_1, beta_2=t.beta_2,
                                     weight_decay=t.weight_decay, **kw)
    else:
        opt = keras.optimizers.SGD(momentum=t.beta_1, weight_decay=t.weight_decay or None, **kw)
    if t.mixed_precision and _policy_name(cfg) == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _policy_name(cfg: Config) -> str:
    if not cfg.train.mixed_precision:
        return "float32"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


class dtype_policy:  # noqa: N801 (context manager used like a function)
    """Temporarily set Keras' dtype policy while a model is built."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self._old = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.name)

    def __exit__(self, *exc: Any) -> None:
        keras.config.set_dtype_policy(self._old)


# ------------------------------------------------------------------ the loop
@dataclass
class FitResult:
    """What a finished (or stopped) training run produced."""

    epochs_completed: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_on_nan: bool = False


class _RunningMeans:
    """Mean of each logged value over the steps of an epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float]) -> dict[str, float]:
        self.count += 1
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        return self.means()

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


class Trainer:
    """Runs the custom distributed loop for a built model.

    Args:
      model: a compiled :class:`~cpc_tf.models.base.ContrastiveModel` created inside
        ``strategy.scope()``.
      strategy: the tf.distribute strategy.
      dataset_fn: ``(input_context, epoch, training) -> tf.data.Dataset`` giving endless
        per-replica batches; `epoch` (the first epoch of this fit) seeds the stream, so a
        resumed run draws different crops from the ones it already saw.
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy, dataset_fn: Any,
                 jit_compile: bool = False) -> None:
        self.model = model
        self.strategy = strategy
        self.dataset_fn = dataset_fn
        step = model.train_step
        test = model.test_step
        if jit_compile and strategy.num_replicas_in_sync == 1:
            step = tf.function(step, jit_compile=True)
            test = tf.function(test, jit_compile=True)
        self._step, self._test = step, test

        @tf.function
        def train_fn(batch: Any) -> dict[str, tf.Tensor]:
            out = strategy.run(self._step, args=(batch,))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in out.items()}

        @tf.function
        def test_fn(batch: Any) -> dict[str, tf.Tensor]:
            out = strategy.run(self._test, args=(batch,))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in out.items()}

        self.train_fn, self.test_fn = train_fn, test_fn
        self._val_dist: Any = None

    def _check_same_start(self, start: int) -> None:
        """Fail on every worker alike unless all restored the same epoch.

        Each worker restores the chief's backup itself; one that saw no backup, or a
        stale one (storage not shared, or not yet consistent), would start elsewhere
        and wait on collectives the others never join. The sums of x and x² over the
        replicas show whether all x are equal (n·Σx² = (Σx)² exactly then), and every
        worker computes the same verdict.
        """
        x = tf.constant(float(start))
        per_replica = self.strategy.run(lambda: tf.stack([x, x * x, 1.0]))
        total, squares, n = (float(v) for v in self.strategy.reduce(
            tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy())
        if n * squares != total * total:
            raise TrainingError(f"the workers restored different epochs (this one: {start}); every "
                                "worker must read the chief's checkpoints/backup from shared storage")

    def _dist(self, epoch: int, training: bool) -> Any:
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: self.dataset_fn(ctx, epoch, training))

    def evaluate(self, steps: int) -> dict[str, float]:
        """Mean metrics over `steps` validation batches (the same crops every time).

        The validation dataset is built (and its map functions traced) once; each call
        starts a fresh iterator over it, which replays the same seeded crops.
        """
        if self._val_dist is None:
            self._val_dist = self._dist(0, False)
        means = _RunningMeans()
        iterator = iter(self._val_dist)
        for _ in range(steps):
            out = self.test_fn(next(iterator))
            means.add({k: float(v) for k, v in out.items()})
        return means.means()

    def fit(self, epochs: int, steps_per_epoch: int, callbacks: list[keras.callbacks.Callback],
            validation_steps: int = 0, verbose: int = 1) -> FitResult:
        """Train until `epochs`, starting where BackupAndRestore left off."""
        model = self.model
        cb = keras.callbacks.CallbackList(callbacks, add_history=True, add_progbar=verbose > 0,
                                          model=model, verbose=verbose, epochs=epochs,
                                          steps=steps_per_epoch)
        model.stop_training = False
        model._initial_epoch = None  # set by BackupAndRestore.on_train_begin when resuming
        cb.on_train_begin()
        start = int(getattr(model, "_initial_epoch", None) or 0)
        if worker_count(self.strategy) > 1:
            self._check_same_start(start)
        result = FitResult(epochs_completed=start)
        # One endless dataset for the whole fit, seeded by the first epoch: rebuilding it
        # per epoch would re-trace its map functions (the augmentation chain) every time.
        iterator = iter(self._dist(start, True)) if start < epochs else None
        for epoch in range(start, epochs):
            cb.on_epoch_begin(epoch)
            means = _RunningMeans()
            for step in range(steps_per_epoch):
                cb.on_train_batch_begin(step)
                out = self.train_fn(next(iterator))
                values = {k: float(v) for k, v in out.items()}
                if not math.isfinite(values["loss"]):
                    result.stopped_on_nan = True
                logs = means.add(values)
                cb.on_train_batch_end(step, logs)  # TerminateOnNaN sees the raw NaN too
                if result.stopped_on_nan:
                    break
            if result.stopped_on_nan:
                # Never call on_epoch_end with NaN weights: checkpoints and the backup
                # keep the last good epoch. on_train_end is skipped for the same reason.
                return result
            logs = means.means()
            if validation_steps:
                logs.update({f"val_{k}": v for k, v in self.evaluate(validation_steps).items()})
            cb.on_epoch_end(epoch, logs)
            result.history.append({"epoch": epoch, **logs})
            result.epochs_completed = epoch + 1
            if model.stop_training:
                break
        cb.on_train_end()
        return result


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


def _callbacks(run: RunFolder, chief: bool, scratch: str) -> tuple[list[keras.callbacks.Callback], AtomicBackupAndRestore]:
    """The standard callbacks; non-chief workers write to a scratch folder.

    Every worker restores from the run's own backup (all replicas must start from the
    same state), but only the chief writes it. The backup is driven *last* (the caller
    appends it after any extra callbacks): it marks an epoch as done only once the
    checkpoint and the history row of that epoch are on disk, so a kill in between
    redoes the epoch instead of losing its row.
    """
    root = RunFolder(run.root if chief else scratch)
    backup = AtomicBackupAndRestore(run.backup_dir, write=chief)
    cbs: list[keras.callbacks.Callback] = [
        AtomicModelCheckpoint(os.path.join(root.checkpoint_dir, "epoch_{epoch:03d}.weights.h5"),
                              save_weights_only=True, verbose=0),
        keras.callbacks.CSVLogger(root.history_path, append=True),
        keras.callbacks.TensorBoard(root.tensorboard_dir, write_graph=False, update_freq="epoch",
                                    profile_batch=0),
        keras.callbacks.TerminateOnNaN(),
    ]
    return cbs, backup


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


def compile_model(cfg: Config, strategy: tf.distribute.Strategy | None = None,
                  total_steps: int = 0, classes: list[str] | None = None) -> keras.Model:
    """A built, compiled model for `cfg`, its variables created under `strategy`.

    ``total_steps`` sets the end of a cosine learning-rate schedule; ``classes`` (with
    ``train.supervised``) the label set of the supervised head.
    """
    from cpc_tf.models.factory import build_model

    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(cfg.train.seed)
    with dtype_policy(_policy_name(cfg)), strategy.scope():
        model = build_model(cfg, classes=classes)
        model.compile(optimizer=make_optimizer(cfg, total_steps))
        model.optimizer.build(model.trainable_variables)
    return model


def train(cfg: Config, options: TrainOptions, model: keras.Model | None = None,
          strategy: tf.distribute.Strategy | None = None,
          extra_callbacks: list[keras.callbacks.Callback] | None = None) -> FitResult:
    """`cpc_tf train`: build or reuse the cache, then train into the run folder.

    `model` and `strategy` may be given (Keras Tuner builds the model itself under its
    strategy); `extra_callbacks` are driven with the standard ones.
    """
    from cpc_tf.audio.cache import open_cache_for
    from cpc_tf.audio.datasets import check_data_fits, labelled_crops, split_clips, training_dataset
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
    cache = open_cache_for(cfg, audio_dir, cache_dir=options.cache_dir, progress=options.verbose > 0 and chief)
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


def export_savedmodel(model: keras.Model, path: str) -> None:
    """``model.export()`` to `path`: a SavedModel whose ``serve`` endpoint is the representation.

    The endpoint takes a float32 batch shaped like the model's input (CPC windows
    ``[B, T+k, W]``, or a waveform crop ``[B, n]``) and returns what ``extract`` stores
    (c_T, the time-averaged context, or h). The folder is replaced as a whole
    (``atomic_write``), so a reader never sees half of it.
    """
    spec = tf.TensorSpec([None, *model.example_input(1).shape[1:]], tf.float32)
    atomic_write(lambda tmp: model.export(tmp, format="tf_saved_model", input_signature=[spec], verbose=False),
                 path)


def load_run_model(run_dir: str) -> keras.Model:
    """The trained model of a run folder (``model.keras``, else the newest checkpoint).

    A supervised run's class list is read from run.json to rebuild it from a checkpoint.
    """
    from cpc_tf.models.factory import build_model

    import cpc_tf.models  # noqa: F401  (registers the classes the .keras file names)

    run = RunFolder(run_dir)
    cfg = run.load_config()
    if os.path.exists(run.model_path):
        return keras.saving.load_model(run.model_path)
    ckpts = sorted(f for f in os.listdir(run.checkpoint_dir)
                   if f.endswith(".weights.h5")) if os.path.isdir(run.checkpoint_dir) else []
    if not ckpts:
        raise DataError(f"{run_dir} has neither model.keras nor a checkpoint yet")
    model = build_model(cfg, classes=run.read_state().get("classes") if cfg.train.supervised else None)
    model.load_weights(os.path.join(run.checkpoint_dir, ckpts[-1]))
    return model


def history_rows(run_dir: str) -> list[dict[str, float]]:
    """The per-epoch rows of a run's history.csv as floats."""
    path = RunFolder(run_dir).history_path
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


__all__ = ["FitResult", "RunFolder", "TrainOptions", "Trainer", "history_rows", "load_run_model",
           "make_optimizer", "make_strategy", "task_name", "train", "worker_count"]
