"""WLASL network: a frozen per-frame 2-D CNN, then temporal pooling over the frame features.

Why this shape: sign-language glosses are short and WLASL subsets are small (tens of videos per
class), so a 3-D CNN trained from scratch overfits; an ImageNet ResNet-18 applied to every
frame gives 512-d features, and the question the study asks is how to combine them over time:

- "mean": average over frames (order-blind baseline) -> Dropout -> Linear.
- "tcn": a Temporal Convolutional Network (Bai et al. 2018): `tcn_levels` residual blocks,
  each two dilated Conv1d(kernel_size) + ReLU + Dropout with dilation 2^i and 'same' padding
  (non-causal: the whole clip is seen, and T is preserved), a 1x1 conv on the residual when the
  widths differ, ReLU after the sum; then average over time -> Linear.
- "attention": a learned query attends (`attention_heads` heads, nn.MultiheadAttention) over
  the frame features plus learned temporal position embeddings (up to MAX_FRAMES = 64
  frames) -> LayerNorm -> Dropout -> Linear. The weights over frames (averaged over heads)
  of the last forward are kept in `pool.last_weights` (B, T) for reports.

Frozen backbone (`freeze_backbone=True`, the default): its parameters have requires_grad
False (so they are not counted as trainable nor given to the optimizer's updates), it stays in
eval mode when the model is put in train() (BatchNorm keeps its ImageNet statistics), and it
runs under torch.no_grad(), so no activation memory is kept for B * T frames. With
`pretrained=True` the ImageNet weights come from the torch hub cache only (see
`trainables.models.video.weights`); inputs are then expected normalised with ImageNet's
mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).

Trainable parameters, measured (frozen ResNet-18, 11,176,512 parameters, excluded), for 10
classes with the defaults (tcn_channels 256, tcn_levels 3, kernel_size 3, 4 heads):
mean 5,130 (the Linear); tcn 1,511,690 (block 1 with its 512 -> 256 shortcut 721,664, blocks
2 and 3 393,728 each, Linear 2,570); attention 1,090,058 (query 512, positions 64 x 512 =
32,768, nn.MultiheadAttention 1,050,624, LayerNorm 1,024, Linear 5,130). An unfrozen backbone
adds its 11,176,512.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import resnet18

from trainables.models.registry import register_model
from trainables.models.video.weights import ensure_weights, load_pretrained_state_dict

POOLING_CHOICES: tuple[str, ...] = ("mean", "tcn", "attention")
BACKBONE_CHOICES: tuple[str, ...] = ("resnet18",)
FEATURE_DIM = 512  # ResNet-18's pooled features
MAX_FRAMES = 64


def frame_backbone(name: str = "resnet18", *, pretrained: bool = False) -> nn.Module:
    """A torchvision 2-D CNN with its fc replaced by Identity: (N, 3, H, W) -> (N, 512)."""
    if name not in BACKBONE_CHOICES:
        valid = ", ".join(repr(b) for b in BACKBONE_CHOICES)
        raise ValueError(f"frame_temporal: unknown backbone {name!r}; choose from {valid}")
    net = resnet18(weights=None)
    if pretrained:
        net.load_state_dict(load_pretrained_state_dict(name))
    net.fc = nn.Identity()
    return net


class MeanPool(nn.Module):
    """(B, T, D) -> (B, D): the average over frames."""

    out_dim: int

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


class TemporalBlock(nn.Module):
    """Residual TCN block: 2 x (dilated Conv1d, same padding, ReLU, Dropout) + shortcut, ReLU."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv1d(c_in, c_out, kernel_size, padding="same", dilation=dilation),
                act1=nn.ReLU(),
                drop1=nn.Dropout(dropout),
                conv2=nn.Conv1d(c_out, c_out, kernel_size, padding="same", dilation=dilation),
                act2=nn.ReLU(),
                drop2=nn.Dropout(dropout),
            )
        )
        self.shortcut = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        return self.act(self.net(x) + self.shortcut(x))


class TCNPool(nn.Module):
    """(B, T, D) -> (B, channels): `levels` TemporalBlocks (dilations 1, 2, 4, ...), time mean."""

    def __init__(
        self, dim: int, channels: int, levels: int, kernel_size: int, dropout: float
    ) -> None:
        super().__init__()
        widths = [dim] + [channels] * levels
        self.blocks = nn.Sequential(
            *(TemporalBlock(widths[i], widths[i + 1], kernel_size, 2**i, dropout)
              for i in range(levels))
        )
        self.out_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x.transpose(1, 2)).mean(dim=2)  # (B, D, T) -> (B, C, T) -> (B, C)


class AttentionPool(nn.Module):
    """(B, T, D) -> (B, D): a learned query attends over the frames + temporal positions.

    `last_weights` holds the last forward's attention over frames, (B, T), averaged over
    heads and detached; each row sums to 1 (no dropout on the weights).
    """

    def __init__(self, dim: int, heads: int, max_frames: int = MAX_FRAMES) -> None:
        super().__init__()
        self.max_frames = max_frames
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.positions = nn.Parameter(torch.randn(max_frames, dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        if t > self.max_frames:
            raise ValueError(f"frame_temporal: attention pooling has position embeddings for "
                             f"{self.max_frames} frames, got clips of {t}")
        frames = x + self.positions[:t].to(x.dtype)
        query = self.query.to(x.dtype).expand(b, -1, -1)
        pooled, weights = self.attn(query, frames, frames, need_weights=True,
                                    average_attn_weights=True)  # (B, 1, D), (B, 1, T)
        self.last_weights = weights[:, 0].detach()
        return self.norm(pooled[:, 0])


class FrameTemporal(nn.Module):
    """`backbone` per frame -> `pool` over time -> `head` (Dropout + Linear); see the module doc.

    Input (B, 3, T, H, W) normalised clips; output (B, num_classes) logits.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        pooling: str = "tcn",
        backbone: str = "resnet18",
        pretrained: bool = False,
        freeze_backbone: bool = True,
        tcn_channels: int = 256,
        tcn_levels: int = 3,
        kernel_size: int = 3,
        attention_heads: int = 4,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        who = "frame_temporal"
        if pooling not in POOLING_CHOICES:
            valid = ", ".join(repr(p) for p in POOLING_CHOICES)
            raise ValueError(f"{who}: unknown pooling {pooling!r}; choose from {valid}")
        if num_classes < 1:
            raise ValueError(f"{who}: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{who}: dropout must be in [0, 1), got {dropout}")
        for name, value in (("tcn_channels", tcn_channels), ("tcn_levels", tcn_levels),
                            ("kernel_size", kernel_size), ("attention_heads", attention_heads)):
            if value < 1:
                raise ValueError(f"{who}: {name} must be >= 1, got {value}")
        if pooling == "attention" and FEATURE_DIM % attention_heads:
            raise ValueError(f"{who}: attention_heads must divide the {FEATURE_DIM}-d frame "
                             f"features, got {attention_heads}")

        self.pooling = pooling
        self.freeze_backbone = freeze_backbone
        self.backbone = frame_backbone(backbone, pretrained=pretrained)
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        pool: MeanPool | TCNPool | AttentionPool
        if pooling == "mean":
            pool = MeanPool(FEATURE_DIM)
        elif pooling == "tcn":
            pool = TCNPool(FEATURE_DIM, tcn_channels, tcn_levels, kernel_size, dropout)
        else:
            pool = AttentionPool(FEATURE_DIM, attention_heads)
        self.pool = pool
        # The TCN already drops out inside its blocks; the other poolings drop before the fc.
        self.head = nn.Sequential(
            OrderedDict(
                drop=nn.Dropout(0.0 if pooling == "tcn" else dropout),
                fc=nn.Linear(pool.out_dim, num_classes),
            )
        )

    def train(self, mode: bool = True) -> FrameTemporal:
        """As nn.Module.train, but a frozen backbone stays in eval mode (BN statistics fixed)."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, T, 512) per-frame backbone features."""
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, 3, H, W)
        if self.freeze_backbone:
            with torch.no_grad():
                feats = self.backbone(frames)
        else:
            feats = self.backbone(frames)
        return feats.reshape(b, t, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.frame_features(x)  # (B, T, 512)
        return self.head(self.pool(feats))  # (B, num_classes)


@register_model("frame_temporal")
def frame_temporal(
    *,
    num_classes: int = 10,
    pooling: str = "tcn",
    backbone: str = "resnet18",
    pretrained: bool = False,
    freeze_backbone: bool = True,
    tcn_channels: int = 256,
    tcn_levels: int = 3,
    kernel_size: int = 3,
    attention_heads: int = 4,
    dropout: float = 0.2,
    weights_root: str | None = None,
) -> FrameTemporal:
    """WLASL: per-frame ResNet-18 features pooled over time; see the module docstring.

    pooling: "mean", "tcn" or "attention"; pretrained: ImageNet backbone weights from the torch
    hub cache (never downloaded); freeze_backbone: no gradients, eval mode, no_grad forward;
    tcn_channels / tcn_levels / kernel_size: the TCN's width, depth and kernel; attention_heads:
    heads of the attention pooling; dropout: in the TCN blocks, else before the classifier;
    weights_root: a bucket URI or folder whose .pth files are copied to the hub cache first
    (once per node; `--weights-root`).
    """
    if pretrained:
        ensure_weights(backbone, weights_root)
    return FrameTemporal(
        num_classes=num_classes,
        pooling=pooling,
        backbone=backbone,
        pretrained=pretrained,
        freeze_backbone=freeze_backbone,
        tcn_channels=tcn_channels,
        tcn_levels=tcn_levels,
        kernel_size=kernel_size,
        attention_heads=attention_heads,
        dropout=dropout,
    )
