"""The name → builder tables of encoders and autoregressors, and the decorators that fill them.

:func:`register_encoder` / :func:`register_autoregressor` record a builder with its model
families, input shape and fit check; :func:`check_names`, :func:`check_encoder` and
:func:`check_autoregressor` ask the tables. The builders themselves are declared (and so
registered) in :mod:`cpc_tf.models.registry`, which is the module to import: the tables
here are empty until it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import keras

from cpc_tf.checks import did_you_mean, shown
from cpc_tf.config import Config
from cpc_tf.errors import ConfigError

Builder = Callable[[Config], keras.layers.Layer]
ShapeFn = Callable[[Config], tuple[int, ...]]
CheckFn = Callable[[Config], None]
F = TypeVar("F", bound=Builder)

ENCODERS: dict[str, Builder] = {}
AUTOREGRESSORS: dict[str, Builder] = {}
_ENCODER_INPUT_SHAPES: dict[str, ShapeFn] = {}
_ENCODER_CHECKS: dict[str, CheckFn] = {}
_ENCODER_FAMILIES: dict[str, tuple[str, ...]] = {}
_AUTOREGRESSOR_CHECKS: dict[str, CheckFn] = {}


def _raw_crop(cfg: Config) -> tuple[int, ...]:
    return (cfg.crop_samples,)


def register_encoder(
    name: str,
    families: tuple[str, ...],
    input_shape: ShapeFn = _raw_crop,
    check: CheckFn | None = None,
) -> Callable[[F], F]:
    """Decorator: register ``builder(cfg) -> keras.layers.Layer`` as encoder ``name``.

    ``families`` are the model families that may use it (``"cpc"``, ``"simclr"``);
    ``input_shape(cfg)`` is the per-example input shape (default: a raw crop of
    ``cfg.crop_samples`` samples); ``check(cfg)`` raises ConfigError when the config
    cannot fit this encoder.
    """

    def decorate(builder: F) -> F:
        ENCODERS[name] = builder
        _ENCODER_FAMILIES[name] = tuple(families)
        _ENCODER_INPUT_SHAPES[name] = input_shape
        if check is not None:
            _ENCODER_CHECKS[name] = check
        return builder

    return decorate


def register_autoregressor(name: str, check: CheckFn | None = None) -> Callable[[F], F]:
    """Decorator: register ``builder(cfg) -> keras.layers.Layer`` as autoregressor ``name``."""

    def decorate(builder: F) -> F:
        AUTOREGRESSORS[name] = builder
        if check is not None:
            _AUTOREGRESSOR_CHECKS[name] = check
        return builder

    return decorate


def _check_known(key: str, name: str, registry: dict[str, Any]) -> None:
    if name not in registry:
        raise ConfigError(
            f"{key}: {shown(name)} is not registered{did_you_mean(name, registry)}; "
            f"known: {', '.join(sorted(registry))}"
        )


def check_names(cfg: Config) -> None:
    """Raise ConfigError unless the encoder is registered for ``model.family`` and, for
    CPC, the autoregressor is registered. Config validation asks this (the families
    are declared here, by ``register_encoder``).
    """
    name, family = cfg.model.encoder, cfg.model.family
    _check_known("model.encoder", name, ENCODERS)
    if family not in _ENCODER_FAMILIES[name]:
        fitting = sorted(n for n, fams in _ENCODER_FAMILIES.items() if family in fams)
        other = " or ".join(sorted(set(_ENCODER_FAMILIES[name])))
        raise ConfigError(
            f"model.encoder={name!r} is a {other} encoder; set model.family={other} or "
            f"choose one of {', '.join(fitting)}"
        )
    if family == "cpc":
        _check_known("model.autoregressor", cfg.model.autoregressor, AUTOREGRESSORS)


def check_encoder(cfg: Config) -> None:
    """Raise ConfigError (naming the settings) when ``cfg`` cannot build its encoder."""
    check_names(cfg)
    check = _ENCODER_CHECKS.get(cfg.model.encoder)
    if check is not None:
        check(cfg)


def check_autoregressor(cfg: Config) -> None:
    """Raise ConfigError when ``cfg`` cannot build its autoregressor (CPC only)."""
    _check_known("model.autoregressor", cfg.model.autoregressor, AUTOREGRESSORS)
    check = _AUTOREGRESSOR_CHECKS.get(cfg.model.autoregressor)
    if check is not None:
        check(cfg)
