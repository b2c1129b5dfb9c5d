"""Strategies and the cluster: which tf.distribute strategy, which worker writes.

Keras 3's ``model.fit`` fails under MultiWorkerMirroredStrategy (keras#20585), so
cpc_tf drives training itself (:mod:`cpc_tf.training.loop`); this module picks the
strategy the loop runs under and answers the questions about the cluster that the
run folder needs (who is chief, how many workers, what a lost peer looks like).
"""

from __future__ import annotations

import os

import tensorflow as tf

from cpc_tf.errors import ConfigError, TrainingError


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
            raise ConfigError(
                "--strategy multiworker needs the TF_CONFIG environment variable "
                "(see tutorial.md, 'Several machines'); locally use --workers N, "
                "or --strategy auto to train in one process"
            )
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
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
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
PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
)


def peer_failure(exc: tf.errors.OpError) -> TrainingError:
    """A one-line TrainingError for a worker that lost its peers."""
    lines = [line.strip() for line in str(exc.message).splitlines() if line.strip()]
    keys = ("unhealthy", "aborted", "timed out", "timeout", "deadline", "unavailable", "connect")
    detail = next(
        (
            line
            for line in lines
            if any(k in line.lower() for k in keys)
            and not line.startswith(("File ", "Detected at node"))
        ),
        type(exc).__name__,
    )
    return TrainingError(
        f"lost contact with another worker ({detail}). Completed epochs are kept in "
        f"the run folder's checkpoints/backup; restart every worker with --resume"
    )
