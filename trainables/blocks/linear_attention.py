"""Linear attention estimator (Jetley et al., "Learn to Pay Attention", ICLR 2018).

Why a block that takes two inputs: unlike the gates in the registry, which look only at the
map they rescale, Jetley's estimator scores every position of an intermediate ("local")
map l against the network's final ("global") descriptor g, so the top of the network tells
the middle where the evidence for the class is; the attention-pooled local vectors then
replace g as the classifier's input. It does not fit `create_attn(name, channels)`, so
backbones build it directly (see `trainables/models/vgg_attention.py`).

Layout as the public reimplementation (SaoYan/LearnToPayAttention, `blocks.py`): an
optional 1x1 projector without bias when l is narrower than g (Jetley project 256 -> 512),
compatibility c = conv1x1(l + g) to one channel without bias ("parametrised compatibility"
of the paper), then softmax over all H*W positions and a weighted sum, or a sigmoid and a
weighted mean (the reimplementation's `normalize_attn=False`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainables.blocks.helpers import RecordsMap

NORMALIZE_CHOICES: tuple[str, ...] = ("softmax", "sigmoid")


class LinearAttentionEstimator(RecordsMap):
    """Jetley et al. 2018 attention: a = norm(conv1x1(P l + g)); pooled = sum_s a_s (P l)_s.

    `forward(x, g)` takes the local map x = l (B, local_channels, H, W) and the global
    descriptor g (B, global_channels) or (B, global_channels, 1, 1), broadcast over
    positions, and returns `(a, pooled)`: the normalised map a (B, 1, H, W) and pooled
    (B, global_channels). "softmax": a sums to 1 over the H*W positions of each image and
    pooled is the a-weighted sum. "sigmoid": each a_s is in (0, 1) independently and pooled
    is the mean over positions of a * l, as in the public reimplementation. P is a 1x1
    projector (no bias) when local_channels != global_channels, else the identity. With
    `record_gate` on, `last_gate` keeps a.
    """

    def __init__(
        self, local_channels: int, global_channels: int, normalize: str = "softmax"
    ) -> None:
        super().__init__()
        if local_channels < 1 or global_channels < 1:
            raise ValueError(
                f"LinearAttentionEstimator: local_channels and global_channels must be >= 1, "
                f"got local_channels={local_channels}, global_channels={global_channels}"
            )
        if normalize not in NORMALIZE_CHOICES:
            valid = ", ".join(repr(n) for n in NORMALIZE_CHOICES)
            raise ValueError(
                f"LinearAttentionEstimator: unknown normalize {normalize!r}; choose from {valid}"
            )
        self.local_channels = local_channels
        self.global_channels = global_channels
        self.normalize = normalize
        self.projector: nn.Module | None = None
        if local_channels != global_channels:
            self.projector = nn.Conv2d(local_channels, global_channels, kernel_size=1, bias=False)
        self.compat = nn.Conv2d(global_channels, 1, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: the local map l; g: the global descriptor. Returns (a, pooled)."""
        if x.dim() != 4 or x.shape[1] != self.local_channels:
            raise ValueError(
                f"LinearAttentionEstimator: expected l of shape (B, {self.local_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        if g.dim() == 2:
            g = g[:, :, None, None]
        if g.dim() != 4 or g.shape[1] != self.global_channels or g.shape[2:] != (1, 1):
            raise ValueError(
                f"LinearAttentionEstimator: expected g of shape (B, {self.global_channels}) or "
                f"(B, {self.global_channels}, 1, 1), got {tuple(g.shape)}"
            )
        if self.projector is not None:
            x = self.projector(x)  # (B, Cg, H, W)
        b, _, h, w = x.shape
        scores = self.compat(x + g)  # (B, 1, H, W)
        if self.normalize == "softmax":
            a = F.softmax(scores.view(b, 1, h * w), dim=2).view(b, 1, h, w)
            pooled = (a * x).sum(dim=(2, 3))  # (B, Cg)
        else:
            a = torch.sigmoid(scores)
            pooled = (a * x).mean(dim=(2, 3))  # (B, Cg)
        self._record(a)
        return a, pooled
