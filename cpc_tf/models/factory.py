"""Build a whole self-supervised model from a config: ``build_model(cfg)``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cpc_tf.config import Config, to_dict
from cpc_tf.errors import ConfigError
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
    ``classes`` (:class:`~cpc_tf.models.supervised.SupervisedModel`). A model too large
    for memory raises ConfigError naming the size settings that grew the most.
    """
    import tensorflow as tf

    try:
        if cfg.train.supervised:
            from cpc_tf.models.supervised import SupervisedModel

            model: ContrastiveModel = SupervisedModel(cfg, classes=classes)
        else:
            model = MODEL_FAMILIES[cfg.model.family](cfg)
        model.build()
    except (tf.errors.ResourceExhaustedError, MemoryError) as exc:
        raise ConfigError(_too_large(cfg, exc)) from None
    return model


def _grown_sizes(cfg: Config) -> list[str]:
    """``key=value (default d)`` for the model's integer sizes above their defaults,
    the most grown first.
    """
    grown: list[tuple[float, str]] = []

    def walk(value: Any, default: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, default.get(k), f"{key}.{k}")
            return
        size, base = (
            (max(value, default=0), max(default or [], default=0))
            if isinstance(value, list)
            else (value, default)
        )
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (size, base))
        if ints and size > base > 0:
            grown.append((size / base, f"{key}={value} (default {default})"))

    walk(to_dict(cfg)["model"], to_dict(Config())["model"], "model")
    return [text for _, text in sorted(grown, reverse=True)]


def _too_large(cfg: Config, exc: BaseException) -> str:
    shape = re.search(r"shape\s*\[[^\]]*\]", str(exc))
    what = f" (out of memory allocating a tensor of {shape.group(0)})" if shape else ""
    grown = _grown_sizes(cfg)
    hint = (
        f"; the sizes that grew most: {', '.join(grown[:3])}"
        if grown
        else "; lower the model's sizes"
    )
    return f"the model of this config does not fit in memory{what}{hint}"
