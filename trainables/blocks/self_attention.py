"""SAGAN self-attention over map positions (Zhang et al., "Self-Attention GANs", 2019).

Why a separate block from multi-head attention: CNNtention's (arXiv:2412.11657) "SelfAtt" is
one head with C -> C query/key projections (SAGAN itself uses C/8) and *no* 1/sqrt(d) scale,
so the softmax over positions is sharper than Vaswani's; that unscaled variant scored best
in CNNtention (8.56% CIFAR-10 error), so it is the default here and `scaled=True` is the
ablation.
No residual and no SAGAN gamma inside: `AttentionResidual` adds `x + F(x)` or
`x + gamma * F(x)`, so every block in the registry combines with `x` the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainables.blocks.helpers import RecordsMap


class SelfAttention2d(RecordsMap):
    """SAGAN self-attention (Zhang et al. 2019): softmax(q^T k) v over the H*W positions.

    q, k: 1x1 conv C -> qk_channels (default C, as in CNNtention); v: 1x1 conv C -> C. Each
    query position's softmax runs over all key positions, unscaled unless `scaled=True`.
    Returns the attended values F(x), shape (B, C, H, W). With `record_gate` on,
    `last_gate` is a (B, 1, H, W) map of the attention each position receives (the mean
    over queries of the softmax matrix), which sums to 1 over the positions of an image.
    """

    def __init__(
        self,
        channels: int,
        qk_channels: int | None = None,
        scaled: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        qk_channels = channels if qk_channels is None else qk_channels
        if channels < 1 or qk_channels < 1:
            raise ValueError(
                f"SelfAttention2d: channels and qk_channels must be >= 1, got "
                f"channels={channels}, qk_channels={qk_channels}"
            )
        self.channels = channels
        self.qk_channels = qk_channels
        self.scaled = scaled
        # SDPA's own default is 1/sqrt(d); 1.0 switches the scale off (CNNtention's math).
        self.scale = qk_channels**-0.5 if scaled else 1.0
        self.to_q = nn.Conv2d(channels, qk_channels, kernel_size=1, bias=bias)
        self.to_k = nn.Conv2d(channels, qk_channels, kernel_size=1, bias=bias)
        self.to_v = nn.Conv2d(channels, channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"SelfAttention2d: expected a map of shape (B, {self.channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        b, c, h, w = x.shape
        # Contiguous tokens: on strided views the fused kernels fall back to the math path,
        # which materialises the (B, N, N) matrix.
        q = self.to_q(x).flatten(2).transpose(1, 2).contiguous()  # (B, N, qk)
        k = self.to_k(x).flatten(2).transpose(1, 2).contiguous()  # (B, N, qk)
        v = self.to_v(x).flatten(2).transpose(1, 2).contiguous()  # (B, N, C)
        if self.record_gate:
            # The fused kernel never materialises the (N, N) matrix; to record where
            # attention went, take the explicit path (same math).
            attn = torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=-1)  # (B, N, N)
            self._record(attn.mean(dim=1).view(b, 1, h, w))  # received attention
            out = attn @ v  # (B, N, C)
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (B, N, C)
        return out.transpose(1, 2).reshape(b, c, h, w)
