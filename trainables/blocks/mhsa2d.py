"""Multi-head self-attention on feature maps (Vaswani et al., "Attention Is All You Need", 2017).

Why a map version beside the token one: CNNtention (arXiv:2412.11657) drops attention
between ResNet stages, where activations are (B, C, H, W); 1x1 conv projections let it work
on the map directly with no reshape in the backbone, and the output projection back to C
keeps the block's shape contract. Several scaled heads are CNNtention's "MHA" variant (8
heads, 8.94% CIFAR-10 error), the counterpart of the single unscaled head in
`self_attention.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainables.blocks.helpers import RecordsMap


class MultiHeadSelfAttention2d(RecordsMap):
    """Multi-head self-attention (Vaswani et al. 2017) on a (B, C, H, W) map, 1x1 conv projections.

    q, k, v: 1x1 conv C -> heads * head_channels; per head softmax(q k^T / sqrt(d)) v over
    the H*W positions; output 1x1 conv back to C. Returns F(x), shape (B, C, H, W); no
    residual (see `AttentionResidual`). With `record_gate` on, `last_gate` is a (B, 1, H, W)
    map of the attention each position receives, averaged over heads and queries.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        head_channels: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if channels < 1 or heads < 1:
            raise ValueError(
                f"MultiHeadSelfAttention2d: channels and heads must be >= 1, got "
                f"channels={channels}, heads={heads}"
            )
        if head_channels is None:
            if channels % heads != 0:
                raise ValueError(
                    f"MultiHeadSelfAttention2d: channels={channels} is not divisible by "
                    f"heads={heads}; pick heads that divide channels or pass head_channels "
                    f"explicitly"
                )
            head_channels = channels // heads
        if head_channels < 1:
            raise ValueError(
                f"MultiHeadSelfAttention2d: head_channels must be >= 1, got {head_channels}"
            )
        self.channels = channels
        self.heads = heads
        self.head_channels = head_channels
        self.scale = head_channels**-0.5
        inner = heads * head_channels
        self.to_q = nn.Conv2d(channels, inner, kernel_size=1, bias=bias)
        self.to_k = nn.Conv2d(channels, inner, kernel_size=1, bias=bias)
        self.to_v = nn.Conv2d(channels, inner, kernel_size=1, bias=bias)
        self.to_out = nn.Conv2d(inner, channels, kernel_size=1, bias=bias)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b = t.shape[0]
        # (B, heads*d, H, W) -> (B, heads, d, N) -> (B, heads, N, d). Contiguous: on a
        # strided view the fused kernels fall back to the math path, which builds the
        # (B, heads, N, N) matrix (16 GB at batch 128 on a 32x32 map).
        return t.view(b, self.heads, self.head_channels, -1).transpose(2, 3).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"MultiHeadSelfAttention2d: expected a map of shape (B, {self.channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        b, _, h, w = x.shape
        q = self._split_heads(self.to_q(x))  # (B, heads, N, d)
        k = self._split_heads(self.to_k(x))  # (B, heads, N, d)
        v = self._split_heads(self.to_v(x))  # (B, heads, N, d)
        if self.record_gate:
            # Explicit matrix only when a map is wanted; the fused kernel never builds it.
            attn = torch.softmax(q @ k.transpose(2, 3) * self.scale, dim=-1)  # (B, heads, N, N)
            self._record(attn.mean(dim=(1, 2)).view(b, 1, h, w))  # received attention
            out = attn @ v  # (B, heads, N, d)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        out = out.transpose(2, 3).reshape(b, self.heads * self.head_channels, h, w)
        return self.to_out(out)  # (B, C, H, W)
