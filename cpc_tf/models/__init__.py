"""Keras 3 models: encoders, autoregressors, CPC and SimCLR, their losses and a registry.

Importing this package registers every cpc_tf layer and model with Keras'
serialization registry (that is all it does), so that after ``import cpc_tf.models``
``keras.saving.load_model("RUN/model.keras")`` needs no ``custom_objects``.
"""

from cpc_tf.dsp import augment, frontend, spec_augment  # noqa: F401  (in-model signal layers)
from cpc_tf.models import (
    autoregressive,
    cpc,
    encoders,
    heads,
    layers,
    melconv,
    simclr,  # noqa: F401
    supervised,
    tunet,
)

__all__ = [
    "autoregressive",
    "cpc",
    "encoders",
    "heads",
    "layers",
    "melconv",
    "simclr",
    "supervised",
    "tunet",
]
