"""Lightweight CNN with spatial attention in its conv layers, from "How Attention Affects CNN
Modules During Training" (project write-up), Part I.

The write-up gives no layout, only "a lightweight CNN with spatial attention modules integrated
into CNN layers", cross-entropy, Adam/AdamW with cosine decay, 100 epochs, best val acc
0.4895 on an unnamed dataset. Chosen here, as the smallest network that fits that text:
per width w in `widths` (default 32, 64, 128): conv3x3 (no bias) + BN + ReLU, then the
attention block, then a 2x2 max-pool; global average pooling; dropout; Linear.

The attention block defaults to CBAM's 7x7 spatial gate ("spatial7": sigmoid(conv7x7([mean_c,
max_c])), the usual "spatial attention module"); any registry name works, "none" gives the
plain CNN the preset compares against. Gates return `x * gate` and are used as such, with no
residual (`residual="none"`, the default), as "attention in the conv layers" reads; the
map self-attention blocks (selfatt, mhsa) return F(x) alone, so for them `residual="plain"`
or "weighted" (x + F(x), x + gamma F(x)) is the sensible setting. SE/CBAM take
`reduction` r as a hidden width of max(1, C // r), as in `cifar_resnet`, so narrow stages
build; mhsa uses 8 heads. Init is PyTorch's default.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import nn

from trainables.blocks.residual import wrap_attention
from trainables.models.cifar_resnet import attention_kwargs
from trainables.models.registry import register_model


class ConvAttnStage(nn.Module):
    """conv3x3 + BN + ReLU, then the attention module `attn` (or None); no pooling."""

    def __init__(self, in_channels: int, out_channels: int, attn: nn.Module | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.register_module("attn", attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv(x)))
        if self.attn is not None:
            x = self.attn(x)
        return x


class LightCNN(nn.Module):
    """The Part I write-up's lightweight CNN (see module docstring).

    `stages[i].attn` is stage i's attention module (None without attention); `cam_layer` is
    the last stage, before its pool.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        attention: str = "spatial7",
        widths: Sequence[int] = (32, 64, 128),
        dropout: float = 0.3,
        residual: str = "none",
        reduction: int = 16,
    ) -> None:
        super().__init__()
        given = widths
        try:
            widths = tuple(operator.index(w) for w in widths)  # ints, numpy ints; not floats
        except TypeError:
            widths = ()
        if not widths or min(widths) < 1:
            raise ValueError(
                f"light_cnn: widths must be a non-empty list of ints >= 1, got {given!r}"
            )
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"light_cnn: in_channels and num_classes must be >= 1, got "
                f"in_channels={in_channels}, num_classes={num_classes}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"light_cnn: dropout must be in [0, 1), got {dropout}")
        if reduction < 1:
            raise ValueError(f"light_cnn: reduction must be >= 1, got {reduction}")
        self.attention_name = attention
        self.widths = widths
        stages = []
        for c_in, c_out in zip((in_channels, *widths[:-1]), widths, strict=True):
            kwargs = attention_kwargs(attention, c_out, reduction=reduction, heads=8, scaled=False)
            attn = wrap_attention(attention, c_out, residual, **kwargs)
            stages.append(ConvAttnStage(c_in, c_out, attn))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Linear(widths[-1], num_classes)

    @property
    def cam_layer(self) -> nn.Module:
        """The last conv stage (attention included, before its pool)."""
        return self.stages[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = self.pool(stage(x))  # (B, w, H / 2^i, W / 2^i)
        x = x.mean(dim=(2, 3))  # (B, widths[-1]) global average pooling
        return self.classify(self.dropout(x))  # (B, num_classes) logits


@register_model("light_cnn")
def light_cnn(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    attention: str = "spatial7",
    widths: Sequence[int] = (32, 64, 128),
    dropout: float = 0.3,
    residual: str = "none",
    reduction: int = 16,
) -> LightCNN:
    """The Part I write-up's lightweight CNN with a spatial attention gate after every conv.

    attention: any registry block or "none" (default CBAM's 7x7 spatial gate); widths: one
    conv stage per entry (a list from a config is fine); residual: how the block joins the
    map ("none" = use its output as is: `x * gate` for gates); reduction: se/cbam hidden
    width max(1, C // r), as `cifar_resnet`.
    """
    return LightCNN(
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        widths=widths,
        dropout=dropout,
        residual=residual,
        reduction=reduction,
    )
