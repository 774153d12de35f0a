"""Model builders by name, torchvision style: `@register_model("name")` and `get_model`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])

_MODEL_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[BuilderT], BuilderT]:
    """Decorator: register a keyword-only model builder under `name` (no duplicates)."""

    def wrap(builder: BuilderT) -> BuilderT:
        if name in _MODEL_REGISTRY:
            raise ValueError(f"Model {name!r} is already registered")
        _MODEL_REGISTRY[name] = builder
        return builder

    return wrap


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODEL_REGISTRY)


def model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered as `name`: callers inspect its signature to validate configs."""
    import trainables.models  # noqa: F401  (registers every model)

    builder = _MODEL_REGISTRY.get(name)
    if builder is None:
        raise ValueError(f"Unknown model {name!r}; choose from {', '.join(list_models())}")
    return builder


def get_model(name: str, **kwargs: object) -> nn.Module:
    """Build the model registered as `name` with the builder's keyword arguments."""
    return model_builder(name)(**kwargs)
