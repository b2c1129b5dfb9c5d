"""Build a whole self-supervised model from a config: ``build_model(cfg)``."""

from __future__ import annotations

from collections.abc import Callable

from cpc_tf.config import Config
from cpc_tf.models.base import ContrastiveModel


def _cpc(cfg: Config) -> ContrastiveModel:
    from cpc_tf.models.cpc import CPC
    return CPC(cfg)


def _simclr(cfg: Config) -> ContrastiveModel:
    from cpc_tf.models.simclr import SimCLR
    return SimCLR(cfg)


MODEL_FAMILIES: dict[str, Callable[[Config], ContrastiveModel]] = {"cpc": _cpc, "simclr": _simclr}


def build_model(cfg: Config, classes: list[str] | None = None) -> ContrastiveModel:
    """A built (variables created) CPC or SimCLR model for `cfg`.

    With ``train.supervised`` the model is the family's model under a linear head over
    ``classes`` (:class:`~cpc_tf.models.supervised.SupervisedModel`).
    """
    if cfg.train.supervised:
        from cpc_tf.models.supervised import SupervisedModel

        model: ContrastiveModel = SupervisedModel(cfg, classes=classes)
    else:
        model = MODEL_FAMILIES[cfg.model.family](cfg)
    model.build()
    return model
