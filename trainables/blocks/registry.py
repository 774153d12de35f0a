"""Map attention blocks by name, so a backbone takes `attn_layer="cbam"` like timm's.

Why one registry for gates and self-attention: every entry builds as
`factory(channels, **kwargs)` and maps (B, C, H, W) -> (B, C, H, W), so any of them drops
into any backbone and a sweep can treat the block as one categorical axis. They differ in
what they return: the gates (se, cbam, spatial, spatial7, eca) return `x * gate`, while the
map self-attention blocks (selfatt, mhsa) return the attended values F(x) alone. A backbone
combines either with `x` through `AttentionResidual` / `wrap_attention` (residual.py):
"none" keeps F(x), "plain" adds x, "weighted" adds x with a learnable gamma from 0.
Token attention (`MultiHeadSelfAttention`) works on (B, N, D) sequences, not maps, so it is
not in this registry.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from trainables.blocks.cbam import CBAM, SpatialGate
from trainables.blocks.eca import EfficientChannelAttention
from trainables.blocks.mhsa2d import MultiHeadSelfAttention2d
from trainables.blocks.self_attention import SelfAttention2d
from trainables.blocks.spatial import PointwiseSpatialGate
from trainables.blocks.squeeze_excite import SqueezeExcite

AttnFactory = Callable[..., nn.Module]

NO_ATTENTION = "none"
_ATTN_REGISTRY: dict[str, AttnFactory] = {}


def register_attn(name: str) -> Callable[[AttnFactory], AttnFactory]:
    """Decorator: register a map attention block (built as `factory(channels, **kw)`)."""

    def wrap(factory: AttnFactory) -> AttnFactory:
        if name == NO_ATTENTION or name in _ATTN_REGISTRY:
            raise ValueError(f"Attention block {name!r} is already registered")
        _ATTN_REGISTRY[name] = factory
        return factory

    return wrap


def list_attn() -> list[str]:
    """Registered block names, sorted (without "none")."""
    return sorted(_ATTN_REGISTRY)


def create_attn(name: str | None, channels: int, **kwargs: object) -> nn.Module | None:
    """Build the block called `name` for a `channels`-wide map; None or "none" gives None."""
    if name is None or name == NO_ATTENTION:
        return None
    factory = _ATTN_REGISTRY.get(name)
    if factory is None:
        valid = ", ".join(repr(n) for n in [NO_ATTENTION, *list_attn()])
        raise ValueError(f"Unknown attention block {name!r}; choose from {valid}")
    return factory(channels, **kwargs)


register_attn("se")(SqueezeExcite)
register_attn("cbam")(CBAM)
register_attn("spatial")(PointwiseSpatialGate)  # the Reduced-MNIST study's Conv2D(1, 1x1, sigmoid)
register_attn("spatial7")(SpatialGate)  # CBAM's 7x7 spatial gate on its own
register_attn("eca")(EfficientChannelAttention)
register_attn("selfatt")(SelfAttention2d)  # CNNtention's SelfAtt: C -> C q/k, unscaled
register_attn("mhsa")(MultiHeadSelfAttention2d)  # CNNtention's MHA: 8 heads, scaled
