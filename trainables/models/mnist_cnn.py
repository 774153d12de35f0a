"""The five Reduced-MNIST CNNs (base, spatial, self, CBAM, SE) as one class, from Part A of the
course report "Impact of Attention Mechanisms in Deep Learning" (Problem 4).

Layout as the source's Keras models, biases everywhere, PyTorch default init:
Conv(32, 3x3, valid) + ReLU -> MaxPool2 -> [map attention, 13x13x32] -> Conv(64, 3x3, valid)
+ ReLU -> MaxPool2 -> ["self": 25 tokens -> MHA(4 heads x 64) -> LayerNorm] -> Flatten(1600)
-> Linear(128) + ReLU -> Dropout -> Linear(10) logits (the loss applies the softmax).

Parameter counts (28x28 input): none 225,034; spatial 225,067; se 225,326; cbam 225,425;
self 291,530, the counts Keras gives for the same layers. Flatten order is
CHW here and HWC in Keras, which permutes the Linear(1600, 128) rows but changes nothing else.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainables.blocks import MultiHeadSelfAttention, create_attn
from trainables.models.registry import register_model

# Map attention after the first block: registry name and the source's hidden widths.
_MAP_ATTENTION: dict[str, tuple[str, dict[str, Any]]] = {
    "spatial": ("spatial", {}),
    "se": ("se", {"rd_channels": 4}),  # Dense(4, ReLU) -> Dense(32, sigmoid)
    "cbam": ("cbam", {"rd_ratio": 1 / 8, "rd_divisor": 1}),  # reduction 8: 32 -> 4 -> 32
}
ATTENTION_CHOICES: tuple[str, ...] = ("none", "spatial", "self", "cbam", "se")


class TokenSelfAttention2d(nn.Module):
    """Map -> (B, H*W, C) tokens -> multi-head self-attention -> LayerNorm -> map.

    No residual, as in the source (`LayerNormalization()(MultiHeadAttention(...)(x, x))`).
    """

    def __init__(self, channels: int, heads: int = 4, head_dim: int = 64) -> None:
        super().__init__()
        self.attn = MultiHeadSelfAttention(channels, heads=heads, head_dim=head_dim)
        self.norm = nn.LayerNorm(channels, eps=1e-3)  # Keras' LayerNormalization epsilon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        tokens = self.norm(self.attn(tokens))  # (B, H*W, C)
        return tokens.transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)


class MnistCNN(nn.Module):
    """The Part A small CNN with one optional attention module (see the module docstring).

    `attention` is the attention module or None; `attention_after` says which conv block
    it follows ("block1" for map gates, "block2" for "self", None without attention);
    `cam_layer` is `feature_map`, the map the head reads.
    """

    def __init__(
        self,
        *,
        attention: str = "none",
        in_channels: int = 1,
        num_classes: int = 10,
        dropout: float = 0.3,
        image_size: int = 28,
        heads: int = 4,
        reduction: int = 8,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_CHOICES:
            valid = ", ".join(repr(a) for a in ATTENTION_CHOICES)
            raise ValueError(f"Unknown attention {attention!r} for mnist_cnn; choose from {valid}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mnist_cnn: dropout must be in [0, 1), got {dropout}")
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"mnist_cnn: in_channels and num_classes must be >= 1, got "
                f"in_channels={in_channels}, num_classes={num_classes}"
            )
        if heads < 1 or not 1 <= reduction <= 32:
            raise ValueError(f"mnist_cnn: heads must be >= 1 and reduction in 1..32, got "
                             f"heads={heads}, reduction={reduction}")
        side = ((image_size - 2) // 2 - 2) // 2  # two valid 3x3 convs, two 2x2 pools
        if side < 1:
            raise ValueError(f"mnist_cnn: image_size must be >= 10, got {image_size}")
        self.attention_name = attention
        self.block1 = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=3), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(32, 64, kernel_size=3), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        )
        module: nn.Module | None = None
        self.attention_after: str | None = None
        if attention in _MAP_ATTENTION:
            name, kwargs = _MAP_ATTENTION[attention]
            if attention == "se":
                kwargs = {"rd_channels": 32 // reduction}
            elif attention == "cbam":
                kwargs = {**kwargs, "rd_ratio": 1 / reduction}
            module = create_attn(name, 32, **kwargs)
            self.attention_after = "block1"
        elif attention == "self":
            module = TokenSelfAttention2d(64, heads=heads, head_dim=64)
            self.attention_after = "block2"
        self.register_module("attention", module)
        # A named seam with no weights: its output is the map the head reads, after the
        # attention whatever the variant, so Grad-CAM reads the same layer for all five.
        self.feature_map = nn.Identity()
        self.head = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(64 * side * side, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    @property
    def cam_layer(self) -> nn.Module:
        """`feature_map`: the last (B, 64, 5, 5) map, after the attention of every variant.

        Not the last Conv2d: for "spatial", "se" and "cbam" that is inside the attention
        block (SE's is a 1x1 map), which made Grad-CAM incomparable across variants.
        """
        return self.feature_map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(x)  # (B, 32, 13, 13) for 28x28 input
        if self.attention is not None and self.attention_after == "block1":
            x = self.attention(x)
        x = self.block2(x)  # (B, 64, 5, 5)
        if self.attention is not None and self.attention_after == "block2":
            x = self.attention(x)
        x = self.feature_map(x)  # (B, 64, 5, 5)
        return self.head(x)  # (B, num_classes) logits


@register_model("mnist_cnn")
def mnist_cnn(
    *,
    attention: str = "none",
    in_channels: int = 1,
    num_classes: int = 10,
    dropout: float = 0.3,
    image_size: int = 28,
    heads: int = 4,
    reduction: int = 8,
) -> MnistCNN:
    """The Reduced-MNIST CNN; `attention` is one of "none", "spatial", "self", "cbam", "se".

    ``heads`` (self) and ``reduction`` (se, cbam: hidden width 32 // reduction) are the
    knobs the source proposes to tune; their defaults are the source's 4 and 8."""
    return MnistCNN(
        attention=attention,
        in_channels=in_channels,
        num_classes=num_classes,
        dropout=dropout,
        image_size=image_size,
        heads=heads,
        reduction=reduction,
    )
