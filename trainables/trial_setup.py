"""What every trial kind does before training: parse its config, pick its device, build its model.

Why a module of its own: the image, audio and video trials differ only in their data; the
config, the device choice and the model registry's checks are one behaviour for all of them,
so no trial kind has to import another to reuse it.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from trainables.config import ConfigError, TrialConfig, parse


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was requested but no CUDA device is visible to this trial")
    return torch.device(requested)


def check_model_config(values: dict[str, Any]):
    """The builder named by ``values['name']``, after checking every other key against it."""
    from trainables.models.registry import model_builder

    kwargs = dict(values)
    name = kwargs.pop("name", None)
    if name is None:
        raise ConfigError("model.name is missing")
    try:
        builder = model_builder(name)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    accepted = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        valid = ", ".join(accepted)
        raise ConfigError(f"unknown config key model.{unknown[0]} for model {name!r}; valid keys: {valid}")
    return builder


def build_model(values: dict[str, Any], *, in_channels: int | None = None,
                num_classes: int | None = None,
                input_size: tuple[int, int] | None = None) -> torch.nn.Module:
    """Model from ``{"name": ..., **kwargs}``; the data decides input channels, classes and,
    for builders that size a dense layer from it, the input's (height, width)."""
    builder = check_model_config(values)
    kwargs = {k: v for k, v in values.items() if k != "name"}
    accepted = inspect.signature(builder).parameters
    height, width = input_size if input_size is not None else (None, None)
    # A config may still pin them explicitly.
    for key, value in (("in_channels", in_channels), ("num_classes", num_classes),
                       ("image_size", height), ("image_width", width)):
        if key in accepted and value is not None:
            kwargs.setdefault(key, value)
    try:
        return builder(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model {values['name']!r}: {err}") from None


def parse_trial(config: dict[str, Any]) -> TrialConfig:
    return parse(TrialConfig, config)
