"""Efficient Channel Attention (Wang et al., "ECA-Net", CVPR 2020).

Why offer it: SE's bottleneck MLP both costs parameters and, the paper argues, hurts by
reducing dimensionality; ECA replaces it with one 1-D conv across neighbouring channels
whose width grows with log2(C), so a 64-channel stage gets a channel gate for 3 weights.
It is the cheap channel gate to set against SE and CBAM's channel half.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainables.blocks.helpers import GateModule, LayerFactory


def eca_kernel_size(channels: int, gamma: int = 2, beta: int = 1) -> int:
    """ECA's adaptive kernel size (Wang et al. 2020, eq. 12): |(log2 C + beta) / gamma|, made odd.

    Odd so that 'same' padding keeps the channel count: 16 and 32 channels give 3, 64 gives
    3, 256 gives 5.
    """
    if channels < 1:
        raise ValueError(f"EfficientChannelAttention: channels must be >= 1, got {channels}")
    if gamma <= 0:
        raise ValueError(f"EfficientChannelAttention: gamma must be > 0, got {gamma}")
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


class EfficientChannelAttention(GateModule):
    """ECA (Wang et al. 2020): GAP -> 1-D conv across channels (no bias) -> gate -> x * gate."""

    def __init__(
        self,
        channels: int,
        gamma: int = 2,
        beta: int = 1,
        kernel_size: int | None = None,
        gate_layer: LayerFactory = nn.Sigmoid,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"EfficientChannelAttention: channels must be >= 1, got {channels}")
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, beta)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"EfficientChannelAttention: kernel_size must be a positive odd number (so "
                f"'same' padding keeps the channel count), got {kernel_size}"
            )
        self.channels = channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.gate = gate_layer()

    def compute_gate(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        s = x.mean(dim=(2, 3)).view(b, 1, c)  # (B, 1, C): channels as a 1-D sequence
        return self.gate(self.conv(s)).view(b, c, 1, 1)  # (B, C, 1, 1)
