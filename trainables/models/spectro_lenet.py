"""The three spoken-digit spectrogram CNNs (LeNet, CBAM, hybrid) as one class, from Part B of
the course report "Impact of Attention Mechanisms in Deep Learning" (Problem 4).

The source's Keras models read 128x128x3 spectrogram images (10 digits) and differ only in
what follows each conv; one class with switches keeps their shared LeNet body identical.
Per stage s (widths 6 then 16, 5x5 valid convs, biases everywhere, PyTorch default init):

    stage{s}: conv -> act (ReLU) -> [bn BatchNorm2d] -> [attn] -> [drop Dropout]
              -> feature_map (Identity: the map the pool reads) -> pool (avg 2)

then Flatten (16 x 29 x 29 = 13456 for 128x128) -> Linear(120) + ReLU -> [Dropout] ->
Linear(84) + ReLU -> [Dropout] -> Linear(num_classes) logits (the loss applies the softmax).

The source's three settings:

- baseline LeNet: `attention="none"`.
- CNN with attention: `batchnorm=True, attention="cbam"`: the full CBAM (channel gate on
  avg- and max-pooled descriptors, then a 7x7 spatial gate) after each BN, reduction 8.
- hybrid: `batchnorm=True, attention="channel", attention_dropout=0.1, dense_dropout=0.5,
  dense_l2=1e-3`: channel attention only (squeeze-excite, reduction 8, then a
  LayerNormalization over channels: `LayerNorm2d`, Keras' eps 1e-3) and Dropout(0.1) in each
  stage; Dropout(0.5) after both hidden dense layers, whose kernels carry an L2 penalty
  of 1e-3 (`regularization_loss`).

The squeeze MLPs' hidden width is `max(1, C // reduction)`: the first stage's 6 channels at
reduction 8 would give 0, which the blocks reject (see `blocks/helpers.py`), so the clamp
passes 1 explicitly (6 -> 1 -> 6, and 16 -> 2 -> 16 in the second stage).

Parameter counts, measured (trainable parameters; 3x128x128 input / 1x128x128 input):

- baseline: 1,628,726 / 1,628,426 (the source reports ~1.62M).
- cbam:     1,629,069 / 1,628,769 = baseline + BN 2 x (6 + 16) = 44 + channel MLPs 19 + 82
  (6 -> 1 -> 6 and 16 -> 2 -> 16, with biases) + two 7x7 spatial convs on 2 maps, with
  bias, 2 x 99 = 198.
- hybrid:   1,628,915 / 1,628,615 = baseline + BN 44 + SE 19 + 82 + LayerNorm 2 x (6 + 16)
  = 44; dropout and the L2 penalty add nothing.

One input channel instead of three removes 2 x 25 x 6 = 300 weights from the first conv and
changes nothing else. Against the source: Keras counts BatchNormalization's moving mean and
variance as (non-trainable) parameters, 2 x (6 + 16) = 44 here, which PyTorch keeps as
buffers; with them our hybrid is 1,628,959 against the source's reported 1,629,144, 185
(0.011%) short, a gap its description does not let us attribute (plausibly a different
squeeze-MLP width or bias choice in the source's channel attention).

BatchNorm2d uses PyTorch's defaults (eps 1e-5, momentum 0.1), not Keras' (1e-3, 0.99).
Flatten order is CHW here and HWC in Keras, which only permutes the first dense layer's rows.
"""

from __future__ import annotations

import operator
from collections import OrderedDict

import torch
from torch import nn

from trainables.blocks.cbam import CBAM
from trainables.blocks.layer_norm import LayerNorm2d
from trainables.blocks.squeeze_excite import SqueezeExcite
from trainables.models.registry import register_model

ATTENTION_CHOICES: tuple[str, ...] = ("none", "cbam", "channel")
WIDTHS: tuple[int, int] = (6, 16)
KERNEL_SIZE = 5
HIDDEN: tuple[int, int] = (120, 84)


def _pooled_side(side: int) -> int:
    """Spatial size after the two (5x5 valid conv, 2x2 avg-pool) stages."""
    for _ in WIDTHS:
        side = (side - (KERNEL_SIZE - 1)) // 2
    return side


def _attention(kind: str, channels: int, reduction: int) -> nn.Module | None:
    """The stage's attention module, hidden width max(1, channels // reduction)."""
    rd_channels = max(1, channels // reduction)
    if kind == "cbam":
        return CBAM(channels, rd_channels=rd_channels, spatial_kernel_size=7)
    if kind == "channel":
        # The SE is a RecordsMap, so explain() reports its channel gate as channel/...
        return nn.Sequential(
            OrderedDict(
                se=SqueezeExcite(channels, rd_channels=rd_channels), norm=LayerNorm2d(channels)
            )
        )
    return None


class SpectroLeNet(nn.Module):
    """The Part B spectrogram LeNet with optional BN / attention / dropout / L2.

    See the module docstring for the layout and counts. `stage1`, `stage2` are
    nn.Sequentials with children conv, act, [bn], [attn], [drop], feature_map, pool; `head`
    holds flatten, fc1, act1, [drop1], fc2, act2, [drop2], out.
    """

    def __init__(
        self,
        *,
        attention: str = "none",
        batchnorm: bool = False,
        reduction: int = 8,
        attention_dropout: float = 0.0,
        dense_dropout: float = 0.0,
        dense_l2: float = 0.0,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 128,
        image_width: int | None = None,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_CHOICES:
            valid = ", ".join(repr(a) for a in ATTENTION_CHOICES)
            raise ValueError(f"spectro_lenet: unknown attention {attention!r}; choose from {valid}")
        try:
            valid_reduction = not isinstance(reduction, bool) and operator.index(reduction) >= 1
        except TypeError:  # a float or str from a config
            valid_reduction = False
        if not valid_reduction:
            raise ValueError(f"spectro_lenet: reduction must be an int >= 1, got {reduction!r}")
        reduction = operator.index(reduction)
        if not 0.0 <= attention_dropout < 1.0:
            raise ValueError(
                f"spectro_lenet: attention_dropout must be in [0, 1), got {attention_dropout}"
            )
        if not 0.0 <= dense_dropout < 1.0:
            raise ValueError(f"spectro_lenet: dense_dropout must be in [0, 1), got {dense_dropout}")
        if not dense_l2 >= 0.0:  # also rejects NaN
            raise ValueError(f"spectro_lenet: dense_l2 must be >= 0, got {dense_l2}")
        if in_channels < 1:
            raise ValueError(f"spectro_lenet: in_channels must be >= 1, got {in_channels}")
        if num_classes < 1:
            raise ValueError(f"spectro_lenet: num_classes must be >= 1, got {num_classes}")
        if image_width is None:
            image_width = image_size
        height, width = _pooled_side(image_size), _pooled_side(image_width)
        if height < 1:
            raise ValueError(f"spectro_lenet: image_size must be >= 16, got {image_size}")
        if width < 1:
            raise ValueError(f"spectro_lenet: image_width must be >= 16, got {image_width}")

        self.attention_name = attention
        self.dense_l2 = float(dense_l2)
        self.feature_shape = (WIDTHS[-1], height, width)
        stages = []
        for c_in, c_out in zip((in_channels, *WIDTHS[:-1]), WIDTHS, strict=True):
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            layers["conv"] = nn.Conv2d(c_in, c_out, KERNEL_SIZE)
            layers["act"] = nn.ReLU(inplace=True)
            if batchnorm:
                layers["bn"] = nn.BatchNorm2d(c_out)
            attn = _attention(attention, c_out, reduction)
            if attn is not None:
                layers["attn"] = attn
            if attention_dropout > 0:
                layers["drop"] = nn.Dropout(attention_dropout)
            # A named seam with no weights: one name for Grad-CAM whatever bn/attn/drop hold.
            layers["feature_map"] = nn.Identity()
            layers["pool"] = nn.AvgPool2d(2)
            stages.append(nn.Sequential(layers))
        self.stage1, self.stage2 = stages

        head: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten(1))
        fan_in = WIDTHS[-1] * height * width
        for i, fan_out in enumerate(HIDDEN, start=1):
            head[f"fc{i}"] = nn.Linear(fan_in, fan_out)
            head[f"act{i}"] = nn.ReLU(inplace=True)
            if dense_dropout > 0:
                head[f"drop{i}"] = nn.Dropout(dense_dropout)
            fan_in = fan_out
        head["out"] = nn.Linear(fan_in, num_classes)
        self.head = nn.Sequential(head)

    @property
    def cam_layer(self) -> nn.Module:
        """Stage 2's `feature_map`: the map its pool reads, after BN, attention and dropout.

        One name for every variant (it used to be attn, bn or act, whichever came last);
        dropout is the identity in eval mode, where Grad-CAM runs, so with attention this
        output is the map the attention produced.
        """
        return self.stage2.feature_map

    def regularized_weights(self) -> list[nn.Parameter]:
        """The kernels the source's L2 applies to: the 120 and 84 dense layers (no biases)."""
        return [self.head.fc1.weight, self.head.fc2.weight]

    def regularization_loss(self) -> torch.Tensor | None:
        """Keras' L2 kernel penalty, `dense_l2 * sum(w ** 2)`, in float32; None when off.

        Why a loss term and not the optimizer's weight decay: Keras adds the penalty to the
        loss, so its gradient is clipped together with the data gradient; Adam's
        `weight_decay` is added after clipping (and AdamW's decoupled decay not at all
        through the gradient), and `l2 * sum(w ** 2)` has gradient `2 * l2 * w`, twice what
        `weight_decay=l2` would apply. The output layer is not penalised, as in the source.
        """
        if self.dense_l2 == 0.0:
            return None
        total = sum(w.float().pow(2).sum() for w in self.regularized_weights())
        return self.dense_l2 * total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage1(x)  # (B, 6, 62, 62) for 128x128 input
        x = self.stage2(x)  # (B, 16, 29, 29)
        return self.head(x)  # (B, num_classes) logits


@register_model("spectro_lenet")
def spectro_lenet(
    *,
    attention: str = "none",
    batchnorm: bool = False,
    reduction: int = 8,
    attention_dropout: float = 0.0,
    dense_dropout: float = 0.0,
    dense_l2: float = 0.0,
    in_channels: int = 3,
    num_classes: int = 10,
    image_size: int = 128,
    image_width: int | None = None,
) -> SpectroLeNet:
    """The Part B spectrogram LeNet; see `trainables.models.spectro_lenet`.

    attention: "none", "cbam" (full CBAM) or "channel" (SE + LayerNorm over channels), after
    each conv's ReLU (and BN, with `batchnorm`); reduction: squeeze-MLP hidden width
    max(1, C // reduction); attention_dropout: Dropout after each stage's attention;
    dense_dropout: Dropout after the 120 and 84 dense layers; dense_l2: their kernels' L2
    factor (`regularization_loss`); image_size / image_width: input height (frequency bins)
    and width (time frames, default image_size).
    """
    return SpectroLeNet(
        attention=attention,
        batchnorm=batchnorm,
        reduction=reduction,
        attention_dropout=attention_dropout,
        dense_dropout=dense_dropout,
        dense_l2=dense_l2,
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        image_width=image_width,
    )
