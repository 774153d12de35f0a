"""Grid attention gate (Oktay et al., "Attention U-Net", 2018; Schlemper et al., "Attention
gated networks", MedIA 2019 / the IPMI attention-gated VGG16_bn).

Why beside Jetley's estimator: the two differ in the compatibility function, which is the
axis the blog article "How Attention Improves a CNN's performance" asks to ablate. Jetley
adds l and a *global vector* g and scores linearly; the grid gate projects l and a *coarse
map* g into a small joint space, adds them, applies a ReLU and only then scores (additive
attention, Bahdanau-style), with a sigmoid per position instead of a softmax, so several
regions can be kept at once, and the gating map keeps a grid of its own, so the gating
context differs from place to place.

Layout as the reference code (ozan-oktay/Attention-Gated-Networks, `GridAttentionBlock2D`,
sub-sample factor 1): theta = W_l 1x1 conv without bias, phi = W_g 1x1 conv with bias,
psi 1x1 conv with bias. The reference's output transform (1x1 conv + BN on the gated map)
is left out: here the gate returns the map and a pooled vector, which a classifier uses
directly (as the public VGG reimplementation's `GridAttentionBlock` does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainables.blocks.helpers import RecordsMap

_EPS = 1e-12  # guards the attention-weighted mean against an all-zero map


class GridAttentionGate(RecordsMap):
    """Grid attention gate (Oktay/Schlemper et al.): a = sigmoid(psi(relu(W_l l + up(W_g g)))).

    `forward(x, g)` takes the local map x = l (B, local_channels, H, W) and the gating
    signal g, a (B, gating_channels, h, w) map of any size (bilinearly resized to H x W
    after W_g, the reference's "upsample") or a (B, gating_channels) / (B, gating_channels,
    1, 1) vector broadcast over positions. Returns `(a, pooled)`: a (B, 1, H, W) with every
    value in (0, 1), and pooled (B, local_channels) = sum_s a_s l_s / sum_s a_s, the
    attention-weighted *average* of l (the IPMI paper's normalised aggregation; a plain sum
    would grow with H*W and a plain mean would shrink with a sparse map). `inter_channels`
    (the joint space) defaults to local_channels // 2, at least 1, as the reference.
    With `record_gate` on, `last_gate` keeps a.
    """

    def __init__(
        self, local_channels: int, gating_channels: int, inter_channels: int | None = None
    ) -> None:
        super().__init__()
        if inter_channels is None:
            inter_channels = max(1, local_channels // 2)
        if local_channels < 1 or gating_channels < 1 or inter_channels < 1:
            raise ValueError(
                f"GridAttentionGate: local_channels, gating_channels and inter_channels must be "
                f">= 1, got local_channels={local_channels}, gating_channels={gating_channels}, "
                f"inter_channels={inter_channels}"
            )
        self.local_channels = local_channels
        self.gating_channels = gating_channels
        self.inter_channels = inter_channels
        self.theta = nn.Conv2d(local_channels, inter_channels, kernel_size=1, bias=False)  # W_l
        self.phi = nn.Conv2d(gating_channels, inter_channels, kernel_size=1, bias=True)  # W_g
        self.psi = nn.Conv2d(inter_channels, 1, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: the local map l; g: the gating map or vector. Returns (a, pooled)."""
        if x.dim() != 4 or x.shape[1] != self.local_channels:
            raise ValueError(
                f"GridAttentionGate: expected l of shape (B, {self.local_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        if g.dim() == 2:
            g = g[:, :, None, None]
        if g.dim() != 4 or g.shape[1] != self.gating_channels:
            raise ValueError(
                f"GridAttentionGate: expected g of shape (B, {self.gating_channels}, h, w) or "
                f"(B, {self.gating_channels}), got {tuple(g.shape)}"
            )
        h, w = x.shape[2:]
        phi_g = self.phi(g)  # (B, inter, h_g, w_g)
        if phi_g.shape[2:] != (h, w) and phi_g.shape[2:] != (1, 1):
            phi_g = F.interpolate(phi_g, size=(h, w), mode="bilinear", align_corners=False)
        a = torch.sigmoid(self.psi(F.relu(self.theta(x) + phi_g)))  # (B, 1, H, W)
        pooled = (a * x).sum(dim=(2, 3)) / a.sum(dim=(2, 3)).clamp_min(_EPS)  # (B, C_l)
        self._record(a)
        return a, pooled
