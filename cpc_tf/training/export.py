"""What a finished run hands on: the SavedModel export, and the trained model read back."""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from cpc_tf.errors import DataError
from cpc_tf.fileio import atomic_write
from cpc_tf.models.saving import keras_reason, load_keras_file
from cpc_tf.training.run_folder import RunFolder


def export_savedmodel(model: keras.Model, path: str) -> None:
    """``model.export()`` to `path`: a SavedModel whose ``serve`` endpoint is the representation.

    The endpoint takes a float32 batch shaped like the model's input (CPC windows
    ``[B, T+k, W]``, or a waveform crop ``[B, n]``) and returns what ``extract`` stores
    (c_T, the time-averaged context, or h). The folder is replaced as a whole
    (``atomic_write``), so a reader never sees half of it.
    """
    spec = tf.TensorSpec([None, *model.example_input(1).shape[1:]], tf.float32)
    atomic_write(
        lambda tmp: model.export(
            tmp, format="tf_saved_model", input_signature=[spec], verbose=False
        ),
        path,
    )


def load_run_model(run_dir: str) -> keras.Model:
    """The trained model of a run folder (``model.keras``, else the newest checkpoint).

    A supervised run's class list is read from run.json to rebuild it from a checkpoint.
    """
    import cpc_tf.models  # noqa: F401  (registers the classes the .keras file names)
    import cpc_tf.training.optim  # noqa: F401  (registers WarmupSchedule, which the optimizer names)
    from cpc_tf.models.factory import build_model

    run = RunFolder(run_dir)
    cfg = run.load_config()
    if os.path.exists(run.model_path):
        return load_keras_file(run.model_path)
    ckpts = (
        sorted(f for f in os.listdir(run.checkpoint_dir) if f.endswith(".weights.h5"))
        if os.path.isdir(run.checkpoint_dir)
        else []
    )
    if not ckpts:
        raise DataError(f"{run_dir} has neither model.keras nor a checkpoint yet")
    model = build_model(
        cfg, classes=run.read_state().get("classes") if cfg.train.supervised else None
    )
    path = os.path.join(run.checkpoint_dir, ckpts[-1])
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError) as exc:
        raise DataError(f"{path}: the checkpoint cannot be read ({keras_reason(exc)})") from None
    return model
