"""Multi-head self-attention on token sequences (Vaswani et al., "Attention Is All You Need", 2017).

Why an inner width apart from `dim`: Keras' `MultiHeadAttention(num_heads, key_dim)`, which
the Reduced-MNIST study ("Impact of Attention Mechanisms in Deep Learning", Part A) used,
projects to `num_heads * key_dim` whatever the token width, so 4 heads of 64 on 64-dim
tokens work in 256 dims (66,368 parameters); this module reproduces that layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017) on (B, N, dim) tokens, Keras MHA layout.

    q, k, v: Linear(dim -> heads * head_dim); softmax(q k^T / sqrt(head_dim)) v per head;
    output Linear(heads * head_dim -> dim). No residual and no norm: add them where called.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        head_dim: int = 64,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim < 1 or heads < 1 or head_dim < 1:
            raise ValueError(
                f"MultiHeadSelfAttention: dim, heads and head_dim must be >= 1, got "
                f"dim={dim}, heads={heads}, head_dim={head_dim}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadSelfAttention: dropout must be in [0, 1), got {dropout}")
        self.dim = dim
        self.heads = heads
        self.head_dim = head_dim
        self.dropout = dropout
        inner = heads * head_dim
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(dim, inner, bias=bias)
        self.to_v = nn.Linear(dim, inner, bias=bias)
        self.to_out = nn.Linear(inner, dim, bias=bias)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, N, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(
                f"MultiHeadSelfAttention: expected tokens of shape (B, N, {self.dim}), "
                f"got {tuple(x.shape)}"
            )
        b, n, _ = x.shape
        q = self._split_heads(self.to_q(x))  # (B, heads, N, d)
        k = self._split_heads(self.to_k(x))  # (B, heads, N, d)
        v = self._split_heads(self.to_v(x))  # (B, heads, N, d)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )  # (B, heads, N, d)
        out = out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)  # (B, N, heads*d)
        return self.to_out(out)  # (B, N, dim)
