"""Shared test setup.

The CPU is split into two logical devices before TensorFlow initialises, so
MirroredStrategy tests can run two replicas on this CPU-only machine (the brief's
"two logical CPU devices"). Single-device code keeps using /cpu:0 as usual.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _split_cpu() -> None:
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0],
            [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
        )
    except RuntimeError:  # TensorFlow was already initialised by an earlier import
        pass


_split_cpu()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository; tests skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real audio not found at {SHARED_DATA} (it lives beside the repository)")
    return SHARED_DATA
