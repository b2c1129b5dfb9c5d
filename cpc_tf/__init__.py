"""cpc_tf: self-supervised audio representation learning with Keras 3 and TensorFlow.

Contrastive Predictive Coding (Bajorath et al. 2021; van den Oord et al. 2018),
SimCLR/CLMR with SampleCNN (Spijkervet & Burgoyne 2021) and TUNe, with the data
pipeline, distributed training engine, extraction and evaluation around them.

The Python API is two names, loaded on first use (see docs/api.md)::

    import cpc_tf
    embedder = cpc_tf.load("runs/my_run")        # a run folder, a .keras file or an export
    vectors = embedder.embed(audio, sample_rate)  # [n_sounds, embedding_size]

Importing this package imports nothing heavy: TensorFlow loads only when a
module that needs it is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {"load": "cpc_tf.api", "Embedder": "cpc_tf.api"}

__all__ = ["Embedder", "__version__", "load"]


def __getattr__(name: str) -> Any:
    """``cpc_tf.load`` and ``cpc_tf.Embedder``, imported on first access."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cpc_tf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
