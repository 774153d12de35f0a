"""The HMDB51 study's CNN: torchvision's R(2+1)D-18 (Tran et al. 2018), truncated, and its
baseline. The study: "Video processing with 3DCNN and Attention mechanism" (GitHub,
vuthanhtung2412/3DCNN-Attention-mechanism).

The study varies how much of the video CNN runs before the attention: it keeps the first
`cnn_blocks` of R(2+1)D-18's 8 basic blocks (4 layers x 2) and drops avgpool and fc. For a
16x112x112 clip the kept part outputs:

- 8 blocks (all):             512 x 2x7x7   =   98 tokens
- 7 (layer4's 2nd dropped):   512 x 2x7x7   =   98 tokens (layer4's 1st block downsamples)
- 6 (layer4 dropped):         256 x 4x14x14 =  784 tokens
- 4 (layer3 + layer4 dropped): 128 x 8x28x28 = 6272 tokens

Only these four are allowed: they are the study's settings, and the others (1-3, 5) would
leave an odd layer half-built without a question behind them.

Parameter counts, measured (the source reports 31.3M / 17.1M / 7.8M / 1.9M):
8 blocks 31,300,125; 7: 17,137,693; 6: 7,804,601; 4: 1,929,865. The baseline
(`r2plus1d`: CNN + global average pool + Linear(C, num_classes)) adds C * num_classes + num_classes:
with 51 classes 31,326,288 (8 blocks), 17,163,856 (7), 7,817,708 (6), 1,936,444 (4).

Pretrained (`pretrained=True`): torchvision's Kinetics-400 weights, loaded into the full
r2plus1d_18 *before* truncating (the 400-way fc is then dropped with the rest), from the torch
hub cache only; see `trainables.models.video.weights`. Inputs are then expected normalised
with Kinetics' statistics, mean (0.43216, 0.394666, 0.37645), std (0.22803, 0.22145, 0.216989).

The kept modules keep torchvision's names (`stem`, `layer1`, ..., `layer4.0`), so the
truncated CNN's state-dict keys are a subset of torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.video import r2plus1d_18

from trainables.models.registry import register_model
from trainables.models.video.weights import ensure_weights, load_pretrained_state_dict

CNN_BLOCK_CHOICES: tuple[int, ...] = (4, 6, 7, 8)
BLOCKS_PER_LAYER = 2
LAYER_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)


def _check_cnn_blocks(cnn_blocks: int, who: str) -> None:
    if isinstance(cnn_blocks, bool) or cnn_blocks not in CNN_BLOCK_CHOICES:
        valid = ", ".join(str(b) for b in CNN_BLOCK_CHOICES)
        raise ValueError(
            f"{who}: cnn_blocks must be one of {valid} (of R(2+1)D-18's 8 basic blocks), "
            f"got {cnn_blocks!r}"
        )


def _layers_kept(cnn_blocks: int) -> list[int]:
    """Blocks kept per layer, e.g. 7 -> [2, 2, 2, 1]; layers with none kept are left out."""
    kept = []
    for layer in range(len(LAYER_CHANNELS)):
        n = min(BLOCKS_PER_LAYER, cnn_blocks - BLOCKS_PER_LAYER * layer)
        if n <= 0:
            break
        kept.append(n)
    return kept


def cnn_out_channels(cnn_blocks: int) -> int:
    """Channels of the truncated CNN's output: 512 (8 or 7 blocks), 256 (6), 128 (4)."""
    _check_cnn_blocks(cnn_blocks, "cnn_out_channels")
    return LAYER_CHANNELS[len(_layers_kept(cnn_blocks)) - 1]


def cnn_output_shape(
    cnn_blocks: int, frames: int, height: int, width: int
) -> tuple[int, int, int, int]:
    """(C, T', H', W') of the truncated CNN for a (3, frames, height, width) clip.

    The stem halves H and W (1x7x7 conv, stride 1x2x2, padding 3); the first block of
    layers 2-4 halves T, H and W (stride 2, padding 1 on 3-tap axes): n -> (n - 1) // 2 + 1.
    """
    c = cnn_out_channels(cnn_blocks)
    t, h, w = frames, (height - 1) // 2 + 1, (width - 1) // 2 + 1
    for _ in range(len(_layers_kept(cnn_blocks)) - 1):  # layer1 keeps the resolution
        t, h, w = (t - 1) // 2 + 1, (h - 1) // 2 + 1, (w - 1) // 2 + 1
    return c, t, h, w


def truncated_r2plus1d(cnn_blocks: int = 8, *, pretrained: bool = False) -> nn.Sequential:
    """R(2+1)D-18's stem and first `cnn_blocks` basic blocks: (B,3,T,H,W) -> (B,C,T',H',W').

    With `pretrained`, the Kinetics-400 weights are loaded (strictly) into the whole
    torchvision network first, so a wrong file fails loudly instead of half-loading.
    """
    _check_cnn_blocks(cnn_blocks, "truncated_r2plus1d")
    full = r2plus1d_18(weights=None)
    if pretrained:
        full.load_state_dict(load_pretrained_state_dict("r2plus1d_18"))
    kept: OrderedDict[str, nn.Module] = OrderedDict(stem=full.stem)
    for i, n in enumerate(_layers_kept(cnn_blocks), start=1):
        layer = getattr(full, f"layer{i}")
        kept[f"layer{i}"] = layer if n == len(layer) else layer[:n]
    return nn.Sequential(kept)


def count_parameters(module: nn.Module) -> int:
    """All parameters of `module` (works on the meta device: no forward, no memory)."""
    return sum(p.numel() for p in module.parameters())


class R2Plus1DClassifier(nn.Module):
    """The study's baseline: truncated R(2+1)D-18 -> global average pool -> Dropout -> Linear.

    `cnn` is the truncated CNN, `head` the Dropout + Linear(C, num_classes).
    """

    def __init__(
        self,
        *,
        num_classes: int = 51,
        cnn_blocks: int = 8,
        dropout: float = 0.0,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        _check_cnn_blocks(cnn_blocks, "r2plus1d")
        if num_classes < 1:
            raise ValueError(f"r2plus1d: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"r2plus1d: dropout must be in [0, 1), got {dropout}")
        self.cnn_blocks = cnn_blocks
        self.cnn = truncated_r2plus1d(cnn_blocks, pretrained=pretrained)
        channels = cnn_out_channels(cnn_blocks)
        self.head = nn.Sequential(
            OrderedDict(drop=nn.Dropout(dropout), fc=nn.Linear(channels, num_classes))
        )

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part: {"cnn", "attention" (0 here), "head"}."""
        return {"cnn": count_parameters(self.cnn), "attention": 0,
                "head": count_parameters(self.head)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.cnn(x)  # (B, C, T', H', W')
        pooled = feats.mean(dim=(2, 3, 4))  # (B, C)
        return self.head(pooled)  # (B, num_classes)


@register_model("r2plus1d")
def r2plus1d(
    *,
    num_classes: int = 51,
    cnn_blocks: int = 8,
    dropout: float = 0.0,
    pretrained: bool = False,
    weights_root: str | None = None,
) -> R2Plus1DClassifier:
    """The study's baseline: truncated R(2+1)D-18 + average pool + Linear; see the module doc.

    cnn_blocks: basic blocks kept, 4, 6, 7 or 8; dropout: before the Linear; pretrained:
    Kinetics-400 weights from the torch hub cache (never downloaded); weights_root: a bucket
    URI or folder whose .pth files are copied there first (once per node; `--weights-root`).
    """
    if pretrained:
        ensure_weights("r2plus1d_18", weights_root)
    return R2Plus1DClassifier(
        num_classes=num_classes, cnn_blocks=cnn_blocks, dropout=dropout, pretrained=pretrained
    )
