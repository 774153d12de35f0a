"""Pointwise spatial gate: Conv2D(1, 1x1, sigmoid) times the map, the "spatial attention" of
the Reduced-MNIST study ("Impact of Attention Mechanisms in Deep Learning", Part A).

Why keep it next to CBAM's 7x7 gate: it sees one pixel's channels only (no neighbourhood, no
pooling), so it is the cheapest spatial gate and the ablation's lower bound.
"""

from __future__ import annotations

import torch
from torch import nn

from trainables.blocks.helpers import GateModule, LayerFactory


class PointwiseSpatialGate(GateModule):
    """Pointwise spatial gate (the Reduced-MNIST study): gate(conv1x1(C -> 1)) -> x * gate."""

    def __init__(
        self,
        channels: int,
        gate_layer: LayerFactory = nn.Sigmoid,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"PointwiseSpatialGate: channels must be >= 1, got {channels}")
        self.channels = channels
        self.conv = nn.Conv2d(channels, 1, kernel_size=1, bias=bias)
        self.gate = gate_layer()

    def compute_gate(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.conv(x))  # (B, 1, H, W)
