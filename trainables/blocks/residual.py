"""How an attention block joins the backbone: F(x), x + F(x), or x + gamma * F(x).

Why a wrapper rather than a flag on each block: CNNtention (arXiv:2412.11657) puts every
attention variant (SelfAtt, MHA, CBAM) behind the same residual (its eqs. 2-3) and compares
plain against weighted residuals (Shen & Zeng 2016: gamma learnable, starting at 0, val acc
90.01 vs 88.00 for SelfAtt). With gamma = 0 the wrapped block is exactly the identity at
init, so a pretrained or baseline backbone starts unchanged and learns how much attention to
mix in. One wrapper keeps that choice an orthogonal sweep axis for every registered block.
"""

from __future__ import annotations

import torch
from torch import nn

from trainables.blocks.registry import create_attn

RESIDUAL_MODES = ("none", "plain", "weighted")


def _check_mode(mode: str) -> None:
    if mode not in RESIDUAL_MODES:
        valid = ", ".join(repr(m) for m in RESIDUAL_MODES)
        raise ValueError(f"Unknown residual mode {mode!r}; choose from {valid}")


class AttentionResidual(nn.Module):
    """Residual around an attention block (CNNtention eqs. 2-3; Shen & Zeng 2016 for "weighted").

    "none": block(x); "plain": x + block(x); "weighted": x + gamma * block(x) with a learnable
    scalar gamma starting at 0. `self.gamma` exists only in "weighted" mode.
    """

    def __init__(self, block: nn.Module, mode: str = "plain") -> None:
        super().__init__()
        _check_mode(mode)
        self.block = block
        self.mode = mode
        if mode == "weighted":
            self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.mode == "none":
            return out
        if self.mode == "plain":
            return x + out
        return x + self.gamma * out

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def wrap_attention(
    name: str | None, channels: int, residual: str = "plain", **kwargs: object
) -> nn.Module | None:
    """`create_attn(name, channels, **kwargs)` wrapped in `AttentionResidual(.., residual)`.

    None or "none" gives None (no attention, no wrapper); the residual mode is checked even
    then, so a typo fails on the baseline run too.
    """
    _check_mode(residual)
    block = create_attn(name, channels, **kwargs)
    if block is None:
        return None
    return AttentionResidual(block, residual)
