"""Convolutional Block Attention Module (Woo et al., "CBAM", ECCV 2018).

Why two gates: the channel gate decides *what* to look at (max pooling adds a sharper cue
than SE's average alone), the spatial gate decides *where*; channel first, then spatial,
the order the paper found best.

Why `rd_divisor=1` here where SE keeps timm's 8: the paper's channel MLP is C -> C/r -> C
(r=16), and CNNtention sweeps r in {8, 16, 32} on 16-channel stages. Rounding the hidden
width up to a multiple of 8 would turn all three into the same 8-wide MLP (r=2) without a
word; with 1 (timm's CBAM default too) `rd_ratio=1/r` means C/r, and a ratio under one
channel is an error (see helpers.py), never a silent change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainables.blocks.helpers import GateModule, LayerFactory
from trainables.blocks.squeeze_excite import SqueezeExcite


class ChannelGate(SqueezeExcite):
    """CBAM channel gate (Woo et al. 2018): gate(MLP(avgpool) + MLP(maxpool)), shared MLP.

    The same reduce-expand MLP as SE, applied to a max-pooled descriptor as well; hidden
    width C * rd_ratio exactly (`rd_divisor=1`, see the module docstring).
    """

    def __init__(self, channels: int, rd_divisor: int = 1, **se_options: Any) -> None:
        # Only the default width rounding differs from SE; every other option is SE's own.
        super().__init__(channels, rd_divisor=rd_divisor, **se_options)

    def compute_gate(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        mx = x.amax(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return self.gate(self._mlp(avg) + self._mlp(mx))  # (B, C, 1, 1)


class SpatialGate(GateModule):
    """CBAM spatial gate (Woo et al. 2018): gate(conv kxk([mean_c, max_c])) -> x * gate.

    `channels` is unused by the math; it is taken so every block builds as `cls(channels)`.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        gate_layer: LayerFactory = nn.Sigmoid,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"SpatialGate: kernel_size must be a positive odd number (so 'same' padding "
                f"keeps the map size), got {kernel_size}"
            )
        self.channels = channels
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=bias)
        self.gate = gate_layer()

    def compute_gate(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat(
            [x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1
        )  # (B, 2, H, W)
        return self.gate(self.conv(pooled))  # (B, 1, H, W)


class CBAM(GateModule):
    """CBAM (Woo et al. 2018): ChannelGate then SpatialGate.

    With `record_gate` on, `last_gate` is the combined (B, C, H, W) gate, so that
    `x * last_gate` is the output; each sub-gate keeps its own if switched on separately.
    """

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        spatial_kernel_size: int = 7,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Sigmoid,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.channel = ChannelGate(
            channels,
            rd_ratio=rd_ratio,
            rd_channels=rd_channels,
            rd_divisor=rd_divisor,
            act_layer=act_layer,
            gate_layer=gate_layer,
            bias=bias,
        )
        self.spatial = SpatialGate(
            channels, kernel_size=spatial_kernel_size, gate_layer=gate_layer, bias=bias
        )

    def compute_gate(self, x: torch.Tensor) -> torch.Tensor:
        cg = self.channel.compute_gate(x)  # (B, C, 1, 1)
        sg = self.spatial.compute_gate(x * cg)  # (B, 1, H, W)
        return cg * sg  # (B, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Applied one after the other rather than via compute_gate: never materialises the
        # full (B, C, H, W) gate unless asked to record it.
        cg = self.channel.compute_gate(x)  # (B, C, 1, 1)
        self.channel._record(cg)
        y = x * cg
        sg = self.spatial.compute_gate(y)  # (B, 1, H, W)
        self.spatial._record(sg)
        if self.record_gate:
            self._record(cg * sg)
        return y * sg
