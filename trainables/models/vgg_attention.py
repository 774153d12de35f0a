"""VGG16_bn with attention at three depths for 32x32 inputs (Jetley et al. 2018), as in the blog
article "How Attention Improves a CNN's performance: A Beginner's Perspective".

"Learn to Pay Attention" (Jetley, Lord, Lee and Torr, ICLR 2018) in the "attention before
pooling" CIFAR layout of the public reimplementation (SaoYan/LearnToPayAttention,
`AttnVGG_before`, which reports CIFAR-100 top-1 error 22.62 against the paper's 22.97 and
plain VGG's 30.62). Every conv is conv3x3 (bias) + BN + ReLU; with `width` w (64 = the real
network):

    block1: w x2 -> block2: 2w x2 -> block3: 4w x3 = l1 (32x32)      no pooling before l1
    maxpool -> block4: 8w x3 = l2 (16x16) -> maxpool -> block5: 8w x3 = l3 (8x8)
    maxpool -> block6: [8w conv, maxpool] x2 (4x4 -> 2x2 -> 1x1)
    dense: conv1x1 8w -> 8w with bias = the global descriptor g (B, 8w, 1, 1)

attention="none": Linear(8w, classes) on g (the plain VGG16_bn baseline of the paper).
attention="linear": three `LinearAttentionEstimator`s (l1 projected 4w -> 8w, l2, l3, each
against g), classifier Linear(3 * 8w) on the concatenated attention-pooled vectors; g itself
reaches the classifier only through the attention, as in the paper.
attention="gate": three `GridAttentionGate`s, the IPMI 2019 attention-gated VGG's
compatibility, with the block5 map l3 (8x8) as the gating signal of all three; classifier
Linear(4w + 8w + 8w + 8w) on [pooled l1, pooled l2, pooled l3, g].

Parameter counts at width 64, 100 classes: none 19,758,756; linear 19,993,764 (+131,072
projector, +3 x 512 compatibility weights, +102,400 for the wider classifier); gate
20,510,631. That is not the ~15M usually quoted for Jetley's VGG-att: VGG16_bn's 13 convs
hold 14.7M, and this layout adds block6's two 512-wide convs (2 x 2.36M) and the 512x512
dense layer (0.26M), as the reimplementation does. The counts are what the layout gives.

Where the sources are vague or differ, the choices made:
- block6 pools after each of its two convs, as the reimplementation (`ConvBlock(pool=True)`);
  a single pool after both convs would need two pools before block6 instead, with the same
  parameters, and would run block6's first conv on a 2x2 map rather than 4x4.
- The dense layer is a 1x1 conv (the reimplementation's kernel im_size / 32 for 32x32
  inputs); larger inputs are average-pooled to 1x1 first, so g is always one vector.
- The grid-attention variant is not the reimplementation's `AttnVGG_grid` (which pools after
  every block, gates two maps and pools g with a 2x2 average): it keeps this file's layout
  so that "linear" vs "gate" changes only the compatibility function. Its gating signal is
  l3 for all three gates (the coarsest map with spatial extent, as the IPMI network gates
  with its last conv block), so l3 gates itself; its pooled vectors are attention-weighted
  means (see `GridAttentionGate`); g joins the classifier, as the reimplementation's grid
  model concatenates its global vector.
- Init as the reimplementation's default (`xavierUniform`): Xavier-uniform conv weights with
  gain sqrt(2), Xavier-uniform Linear weights, zero biases; BatchNorm keeps PyTorch's
  (1, 0) rather than the reimplementation's uniform(0, 1) scale.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainables.blocks.attention_gate import GridAttentionGate
from trainables.blocks.linear_attention import NORMALIZE_CHOICES, LinearAttentionEstimator
from trainables.models.registry import register_model

ATTENTION_CHOICES: tuple[str, ...] = ("none", "linear", "gate")


def conv_block(
    in_channels: int, out_channels: int, num_convs: int, pool: bool = False
) -> nn.Sequential:
    """`num_convs` x (conv3x3 + BN + ReLU), each followed by a 2x2 max-pool when `pool`."""
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += [
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
        if pool:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class VGGAttention(nn.Module):
    """VGG16_bn for 32x32 inputs with Jetley's or grid attention (see module docstring).

    `attn1..attn3` are the attention modules (None without attention); `cam_layer` is
    block5, whose output is l3.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        attention: str = "none",
        normalize: str = "softmax",
        width: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_CHOICES:
            valid = ", ".join(repr(a) for a in ATTENTION_CHOICES)
            raise ValueError(
                f"vgg16_attention: unknown attention {attention!r}; choose from {valid}"
            )
        if in_channels < 1 or num_classes < 1 or width < 1:
            raise ValueError(
                f"vgg16_attention: in_channels, num_classes and width must be >= 1, got "
                f"in_channels={in_channels}, num_classes={num_classes}, width={width}"
            )
        if normalize not in NORMALIZE_CHOICES:
            valid = ", ".join(repr(n) for n in NORMALIZE_CHOICES)
            raise ValueError(
                f"vgg16_attention: unknown normalize {normalize!r}; choose from {valid}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"vgg16_attention: dropout must be in [0, 1), got {dropout}")
        self.attention_name = attention
        self.normalize = normalize
        w1, w2, w3, w4 = width, 2 * width, 4 * width, 8 * width
        self.block1 = conv_block(in_channels, w1, 2)
        self.block2 = conv_block(w1, w2, 2)
        self.block3 = conv_block(w2, w3, 3)  # -> l1
        self.block4 = conv_block(w3, w4, 3)  # -> l2
        self.block5 = conv_block(w4, w4, 3)  # -> l3
        self.block6 = conv_block(w4, w4, 2, pool=True)
        self.pool = nn.MaxPool2d(2)
        self.dense = nn.Conv2d(w4, w4, kernel_size=1)  # -> g
        attns: list[nn.Module | None] = [None, None, None]
        features = w4
        if attention == "linear":
            attns = [
                LinearAttentionEstimator(w3, w4, normalize),  # projects l1 4w -> 8w
                LinearAttentionEstimator(w4, w4, normalize),
                LinearAttentionEstimator(w4, w4, normalize),
            ]
            features = 3 * w4
        elif attention == "gate":
            attns = [
                GridAttentionGate(w3, w4),
                GridAttentionGate(w4, w4),
                GridAttentionGate(w4, w4),
            ]
            features = w3 + w4 + w4 + w4
        for i, attn in enumerate(attns):
            self.register_module(f"attn{i + 1}", attn)
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Linear(features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight, gain=math.sqrt(2.0))
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
            if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def cam_layer(self) -> nn.Module:
        """block5, whose output l3 (8x8 for 32x32 inputs) Grad-CAM should read."""
        return self.block5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(x))  # (B, 2w, 32, 32)
        l1 = self.block3(x)  # (B, 4w, 32, 32)
        l2 = self.block4(self.pool(l1))  # (B, 8w, 16, 16)
        l3 = self.block5(self.pool(l2))  # (B, 8w, 8, 8)
        x = self.block6(self.pool(l3))  # (B, 8w, 1, 1)
        if x.shape[2:] != (1, 1):
            x = x.mean(dim=(2, 3), keepdim=True)  # inputs larger than 32x32
        g = self.dense(x)  # (B, 8w, 1, 1)
        if self.attn1 is None or self.attn2 is None or self.attn3 is None:
            features = g.flatten(1)  # (B, 8w)
        elif self.attention_name == "linear":
            pooled = [
                attn(lx, g)[1]
                for attn, lx in ((self.attn1, l1), (self.attn2, l2), (self.attn3, l3))
            ]
            features = torch.cat(pooled, dim=1)  # (B, 3 * 8w)
        else:
            pooled = [
                attn(lx, l3)[1]
                for attn, lx in ((self.attn1, l1), (self.attn2, l2), (self.attn3, l3))
            ]
            features = torch.cat([*pooled, g.flatten(1)], dim=1)  # (B, 4w + 3 * 8w)
        return self.classify(self.dropout(features))  # (B, num_classes) logits


@register_model("vgg16_attention")
def vgg16_attention(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    attention: str = "none",
    normalize: str = "softmax",
    width: int = 64,
    dropout: float = 0.0,
) -> VGGAttention:
    """Jetley et al. 2018 VGG16_bn with attention for 32x32 inputs.

    attention: "none" (plain VGG16_bn), "linear" (Jetley's estimator; `normalize` "softmax"
    or "sigmoid") or "gate" (IPMI 2019 grid attention gates); width: channels of block1,
    64 for the real network (tests use 8); dropout before the classifier.
    """
    return VGGAttention(
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        normalize=normalize,
        width=width,
        dropout=dropout,
    )
