"""LayerNorm over the channels of an NCHW map (the idea of timm's LayerNorm2d).

Why: Keras' `LayerNormalization()` on a channels-last map normalises each pixel's channel
vector; PyTorch's `nn.LayerNorm(C)` normalises the last dim, which on NCHW is the width.
`LayerNorm2d` moves the channels last, normalises them, and moves them back, so a Keras
`LayerNormalization` after a conv block translates one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over dim 1 of a (B, C, H, W) tensor: per pixel, across its C channels.

    Same parameters as `nn.LayerNorm(channels)` (a weight and a bias of C each, with
    `elementwise_affine`). `eps` defaults to 1e-3, Keras' `LayerNormalization` epsilon, not
    PyTorch's 1e-5: models ported from Keras keep the source's numerics, which matter for
    channel vectors with small variance (a few channels, as after a squeeze-excite gate).
    """

    def __init__(self, channels: int, eps: float = 1e-3, elementwise_affine: bool = True) -> None:
        super().__init__(channels, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)
