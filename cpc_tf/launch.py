"""Old home of the local multi-worker launcher; it lives in :mod:`cpc_tf.training.launch`."""

from cpc_tf.training.launch import (
    free_ports,
    launch_local_workers,
    run_workers,
    tf_config,
    worker_argv,
)

__all__ = ["free_ports", "launch_local_workers", "run_workers", "tf_config", "worker_argv"]
