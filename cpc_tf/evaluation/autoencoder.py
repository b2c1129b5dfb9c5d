"""The dimensionality-reducing autoencoder of Bajorath et al. 2021, §2.3.1, Table 4.

Seed 004 worried that c_dim = 512 lets even a linear probe fit noise, so it first
trains a fully connected autoencoder on the embeddings and feeds the bottleneck to the
classifier. Table 4: dense units [256, 256, 128, 64, 32, 64, 128, 256], dropout 0.1,
leaky ReLU, reduced dimension 32; a final linear Dense maps back to the input size and
the reconstruction is trained with mean squared error. Table 5 gives the training
settings shared with the classifier (10 epochs, learning rate 1e-4, batch 32, Adam).

Here the autoencoder is fitted on the training split only (the seed trained it on all
embeddings, which lets the test set shape the features), and only its encoder half --
input to the bottleneck activation -- is returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import keras


@dataclass
class AutoencoderResult:
    """The fitted encoder half and the reconstruction loss per epoch."""

    encoder: keras.Model
    history: dict[str, list[float]]

    def reduce(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Bottleneck features of `x` (dropout is off at inference)."""
        return np.asarray(
            self.encoder.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)
        )


def bottleneck_index(units: Sequence[int]) -> int:
    """Index of the narrowest layer (the first one, if several tie)."""
    if not units:
        raise ValueError("autoencoder units must not be empty")
    return int(np.argmin(units))


def build_autoencoder(
    input_dim: int,
    units: Sequence[int] = (256, 256, 128, 64, 32, 64, 128, 256),
    dropout: float = 0.1,
    seed: int = 0,
) -> tuple[keras.Model, keras.Model]:
    """(autoencoder, encoder) of Table 4: Dense -> LeakyReLU -> Dropout per entry of `units`."""
    import keras

    neck = bottleneck_index(units)
    inputs = keras.Input(shape=(input_dim,), name="embedding")
    h = inputs
    code = None
    for i, n in enumerate(units):
        h = keras.layers.Dense(int(n), name=f"dense_{i}")(h)
        h = keras.layers.LeakyReLU(name=f"leaky_relu_{i}")(h)
        if i == neck:
            code = h
        if dropout > 0:
            h = keras.layers.Dropout(dropout, seed=seed + i, name=f"dropout_{i}")(h)
    outputs = keras.layers.Dense(input_dim, name="reconstruction")(h)
    return (
        keras.Model(inputs, outputs, name="autoencoder"),
        keras.Model(inputs, code, name="autoencoder_encoder"),
    )


def fit_autoencoder(
    x_train: np.ndarray,
    *,
    units: Sequence[int] = (256, 256, 128, 64, 32, 64, 128, 256),
    dropout: float = 0.1,
    epochs: int = 10,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
) -> AutoencoderResult:
    """Train the Table 4 autoencoder with MSE on the training features only."""
    import keras

    keras.utils.set_random_seed(seed)
    x = np.asarray(x_train, dtype=np.float32)
    auto, encoder = build_autoencoder(x.shape[1], units, dropout, seed)
    auto.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse", steps_per_execution=16)
    hist = auto.fit(x, x, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return AutoencoderResult(
        encoder, {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    )
