"""Squeeze-and-Excitation channel gate (Hu et al., "Squeeze-and-Excitation Networks", 2018).

Why: a global-average "squeeze" lets every channel's weight depend on the whole image at the
cost of two tiny 1x1 convs; the Reduced-MNIST study ("Impact of Attention Mechanisms in Deep
Learning", Part A) found it the cheapest variant that helped.
"""

from __future__ import annotations

import torch
from torch import nn

from trainables.blocks.helpers import GateModule, LayerFactory, reduced_channels


class SqueezeExcite(GateModule):
    """SE (Hu et al. 2018): GAP -> 1x1 conv reduce -> act -> 1x1 conv expand -> gate -> x * gate.

    Hidden width: `rd_channels` if given, else C * rd_ratio rounded to a multiple of
    `rd_divisor` (timm's SE default 8, so 64 channels at 1/16 get 8, not 4; pass
    `rd_divisor=1` for the paper's exact C/r). A ratio under one channel is an error.
    """

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Sigmoid,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.rd_channels = reduced_channels(
            channels, rd_ratio, rd_channels, rd_divisor, owner=type(self).__name__
        )
        # 1x1 convs on a (B, C, 1, 1) descriptor are Dense layers that skip a reshape.
        self.fc1 = nn.Conv2d(channels, self.rd_channels, kernel_size=1, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(self.rd_channels, channels, kernel_size=1, bias=bias)
        self.gate = gate_layer()

    def _mlp(self, s: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(s)))

    def compute_gate(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return self.gate(self._mlp(s))  # (B, C, 1, 1)
