"""Typed views of a trial's config dict: unknown keys and wrong types fail loudly.

A trial's config arrives from Ray as a nested dict. Parsing it into frozen dataclasses at
the top of the trial means a typo in a preset or a ``--set`` is an error naming the key,
not a silently ignored setting that makes an ablation compare the wrong things.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["none", "step", "multistep", "cosine"]
Precision = Literal["fp32", "bf16", "fp16", "fp16_pure"]
Monitor = Literal["val_acc", "val_loss"]


class ConfigError(ValueError):
    """A config key is unknown or its value has the wrong type; the message names the key."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything the loop needs to train one model; no data or model specifics."""

    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 1000
    optimizer: Optimizer = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    eps: float = 1e-8                # adam/adamw denominator term (0 in float16: see fp16_pure)
    momentum: float = 0.9            # sgd only
    nesterov: bool = False           # sgd only
    schedule: Schedule = "none"
    step_size: int = 30              # epochs, for "step"
    milestones: tuple[int, ...] = ()  # epochs, for "multistep"
    gamma: float = 0.1               # lr factor at each step / milestone
    warmup_epochs: int = 0           # linear warm-up before the schedule
    precision: Precision = "fp32"
    grad_clip: float | None = None   # max gradient norm; None disables
    # "global": the norm of all gradients together (torch's clip_grad_norm_); "per_tensor":
    # each parameter's gradient on its own, which is what Keras' `clipnorm` does.
    grad_clip_mode: Literal["global", "per_tensor"] = "global"
    label_smoothing: float = 0.0
    patience: int | None = None      # epochs without improvement of `monitor`; None disables
    monitor: Monitor = "val_acc"     # picks the best checkpoint and drives early stopping
    restore_best: bool = True        # test the best checkpoint; False: the final weights
    max_batches: int | None = None   # cap on batches per epoch and per evaluation (smoke runs)
    divergence_check_every: int = 25  # steps between device syncs that look for a non-finite loss
    channels_last: bool = False
    compile: bool = False            # torch.compile the model
    # Epochs between checkpoints; none or 0: automatic (while an epoch takes under a
    # minute, one at least 30 s after the last, else one at least 10 minutes after it). The last epoch (finished
    # or stopped on patience) always checkpoints; a diverged trial never does.
    checkpoint_every: int | None = None
    # Epochs that always checkpoint whatever the cadence: where a scheduler may pause the
    # trial (the halving rungs), since a paused trial restarts from its last checkpoint.
    checkpoint_at: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        """Refuse values the loop, torch or Ray would fail on later, deep in a trial."""
        for key in ("epochs", "batch_size", "eval_batch_size", "step_size",
                    "divergence_check_every"):
            _at_least(f"train.{key}", getattr(self, key), 1)
        for key in ("patience", "max_batches"):
            if getattr(self, key) is not None:
                _at_least(f"train.{key}", getattr(self, key), 1, "or none")
        _at_least("train.warmup_epochs", self.warmup_epochs, 0)
        if self.checkpoint_every is not None:
            _at_least("train.checkpoint_every", self.checkpoint_every, 0, "or none (0: automatic)")
        for key in ("weight_decay", "eps"):
            _at_least(f"train.{key}", getattr(self, key), 0.0)
        for key, value in (("lr", self.lr), ("gamma", self.gamma), ("grad_clip", self.grad_clip)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"train.{key}={value} must be a finite number > 0"
                                  + (" (or none)" if key == "grad_clip" else ""))
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"train.momentum={self.momentum} must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"train.label_smoothing={self.label_smoothing} must be in [0, 1)")
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(
                set(self.milestones)):
            raise ConfigError(f"train.milestones={list(self.milestones)} must be increasing "
                              "epochs >= 1")
        if any(e < 1 for e in self.checkpoint_at):
            raise ConfigError(f"train.checkpoint_at={list(self.checkpoint_at)} must be epochs >= 1")


def _at_least(key: str, value: float, low: float, extra: str = "") -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= low):
        raise ConfigError(f"{key}={value} must be >= {low:g}{' ' + extra if extra else ''}")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-batch augmentation, run batched on the device (never on val or test).

    Off by default: an ablation preset must ask for the augmentation its source used.
    """

    crop_padding: int = 0            # random crop of the input size after zero-padding
    flip: bool = False               # random horizontal flip of half the batch
    noise_std: float = 0.0           # Gaussian noise added to inputs, in input units
    freq_mask: int = 0               # max rows (frequency bins) per SpecAugment band; 0: off
    time_mask: int = 0               # max columns (time frames) per band; 0: off
    mask_count: int = 1              # bands of each kind per example

    def __post_init__(self) -> None:
        for key in ("crop_padding", "noise_std", "freq_mask", "time_mask"):
            if getattr(self, key) < 0:
                raise ConfigError(f"augment.{key}={getattr(self, key)} must be >= 0")
        if self.mask_count < 1:
            raise ConfigError(f"augment.mask_count={self.mask_count} must be >= 1")


@dataclass(frozen=True)
class TrialConfig:
    """The top level of a trial: which data, which model, how to train, and the seed."""

    seed: int = 0
    variant: str = ""                # the preset's name for this ablation row; a label only
    stage: Literal["single", "tune", "replicate"] = "single"  # labels only (the protocol's)
    draw: int = 0                    # which tuning candidate of its arm this config is
    data: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"


T = TypeVar("T")


def parse(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``values``, checking names and types of every key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or cls.__name__} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]}; valid keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in values.items():
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = parse(hint, value, key)
        else:
            kwargs[name] = coerce(value, hint, key)
    return cls(**kwargs)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a type hint, allowing int where float is expected."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r} is not allowed; choose from {', '.join(map(str, args))}")
        return value
    if origin in (types.UnionType, typing.Union):
        if value == "none" and type(None) in args:
            return None  # `--set train.grad_clip=none` from a command line
        errors = []
        for option in args:
            try:
                return coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}={value!r} has the wrong type; expected {_name(hint)}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{key}={value!r} must be None")
        return None
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}={value!r} must be a list")
        return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} must be a mapping")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r} has the wrong type; expected {_name(hint)}")
    return value


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
