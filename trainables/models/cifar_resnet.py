"""CIFAR ResNet (He et al. 2016, §4.2) with attention between stages, as in "CNNtention: Can
CNNs do better with Attention?" (arXiv:2412.11657).

Backbone as akamaster's "Proper ResNet implementation for CIFAR10" that CNNtention settled on:
conv3x3(in_channels -> 16) + BN + ReLU; three stages of n basic blocks (16/32/64 channels,
strides 1/2/2; block = conv3x3-BN-ReLU-conv3x3-BN, + shortcut, ReLU); option-A shortcut
(stride-2 subsample and zero-padded channels, no parameters); global average pooling;
Linear(64, num_classes). depth = 6n + 2. Kaiming-normal (fan_in) init of every backbone
Conv2d and Linear weight, akamaster's `_weights_init`.

Init of the attention blocks (`attention_init`): "default" (the default) leaves each block
its own init (PyTorch's); "kaiming" re-initialises their Conv2d/Linear weights with the
backbone's Kaiming-normal too, as CNNtention's code did (its init loop runs over every module
after the attention is built). CNNtention trained that with Adam, which normalises the step;
under plain SGD the unscaled SelfAtt then starts with q.k logits of std about 2 sqrt(C) per
unit input variance (16 at C = 64, a one-hot softmax) and, on a random batch, gradient
norms near 2e3 (stage placement) and 8e5 (block placement) against about 10 for the
baseline, so the faithful variant is an explicit choice rather than the default.

Parameter counts (CIFAR-10, no attention): ResNet-20 269,722 (0.27M), ResNet-32 464,154
(0.46M), ResNet-44 658,586 (0.66M), ResNet-56 853,018 (0.85M), the sizes He et al.'s
Table 6 rounds. With a
1-channel (MNIST) input the stem loses 16 * 2 * 9 = 288 weights: ResNet-20 269,434.

Attention (CNNtention §4.3, eqs. 2-3): `placement="stage"` puts one module after each stage
(`attn1`, `attn2`, `attn3`, CNNtention's figure 2); `placement="block"` one after every basic
block (the CBAM paper's density, kept as `layerN[i].attn`; 3n modules). Each is wrapped in
`AttentionResidual` with `residual` = "none" (F(x): the unstable variant of CNNtention's
figure 5), "plain" (x + F(x)) or "weighted" (x + gamma F(x), gamma from 0: the network is
exactly the baseline at init).

Where CNNtention is vague, the choices made: CBAM/SE reduction r gives a hidden width of
max(1, C // r), passed as `rd_channels` (CNNtention sweeps r in {8, 16, 32} on stages of 16,
32 and 64 channels, so C // r reaches 0 at r=32 on the first stage; the clamp keeps one
hidden unit there, and the module reports the width it got in `rd_channels`). No timm-style
rounding to multiples of 8: that would make r=8, 16 and 32 the same network on every stage.
Knobs that do not apply to the chosen block (reduction for selfatt, heads for cbam, ...) are
accepted and ignored, so a grid over attention x reduction builds every cell.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.blocks.residual import RESIDUAL_MODES, wrap_attention
from trainables.models.registry import register_model

PLACEMENTS: tuple[str, ...] = ("stage", "block")
ATTENTION_INITS: tuple[str, ...] = ("default", "kaiming")
STAGE_CHANNELS: tuple[int, int, int] = (16, 32, 64)
STAGE_STRIDES: tuple[int, int, int] = (1, 2, 2)


class ZeroPadShortcut(nn.Module):
    """He et al.'s option A: subsample by `stride`, zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        pad = planes - in_planes
        self.pad_front = pad // 2  # akamaster pads planes // 4 on each side: the same split
        self.pad_back = pad - pad // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))


class BasicBlock(nn.Module):
    """He et al. 2016 basic block, option-A shortcut; `attn` (or None) follows the final ReLU."""

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, attn: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = ZeroPadShortcut(in_planes, planes, stride)
        self.register_module("attn", attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = F.relu(out + self.shortcut(x))
        if self.attn is not None:
            out = self.attn(out)
        return out


def attention_kwargs(
    attention: str, channels: int, *, reduction: int, heads: int, scaled: bool
) -> dict[str, object]:
    """The keyword arguments the registry block `attention` takes for a `channels`-wide map.

    Only knobs the block accepts: reduction as rd_channels = max(1, C // r) to se/cbam,
    heads to mhsa, scaled to selfatt; every other block gets none.
    """
    if attention in ("se", "cbam"):
        return {"rd_channels": max(1, channels // reduction)}
    if attention == "mhsa":
        return {"heads": heads}
    if attention == "selfatt":
        return {"scaled": scaled}
    return {}


class CifarResNet(nn.Module):
    """He et al. 2016 CIFAR ResNet with CNNtention's optional attention (see module docstring).

    `cam_layer` is the module whose output Grad-CAM should read: `feature_map`, the last
    stage's output after its attention, whatever the variant and placement.
    `attention_modules` lists the attention modules in forward order.
    """

    def __init__(
        self,
        *,
        depth: int = 20,
        in_channels: int = 3,
        num_classes: int = 10,
        attention: str = "none",
        placement: str = "stage",
        residual: str = "plain",
        reduction: int = 16,
        heads: int = 8,
        scaled: bool = False,
        attention_init: str = "default",
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(
                f"cifar_resnet: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...), "
                f"got depth={depth}"
            )
        if placement not in PLACEMENTS:
            valid = ", ".join(repr(p) for p in PLACEMENTS)
            raise ValueError(f"cifar_resnet: unknown placement {placement!r}; choose from {valid}")
        if residual not in RESIDUAL_MODES:
            valid = ", ".join(repr(m) for m in RESIDUAL_MODES)
            raise ValueError(f"cifar_resnet: unknown residual {residual!r}; choose from {valid}")
        if attention_init not in ATTENTION_INITS:
            valid = ", ".join(repr(i) for i in ATTENTION_INITS)
            raise ValueError(
                f"cifar_resnet: unknown attention_init {attention_init!r}; choose from {valid}"
            )
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"cifar_resnet: in_channels and num_classes must be >= 1, got "
                f"in_channels={in_channels}, num_classes={num_classes}"
            )
        if reduction < 1 or heads < 1:
            raise ValueError(
                f"cifar_resnet: reduction and heads must be >= 1, got reduction={reduction}, "
                f"heads={heads}"
            )
        self.depth = depth
        self.attention_name = attention
        self.placement = placement
        self.residual = residual
        self.reduction = reduction
        n = (depth - 2) // 6

        def make_attn(channels: int) -> nn.Module | None:
            kwargs = attention_kwargs(
                attention, channels, reduction=reduction, heads=heads, scaled=scaled
            )
            return wrap_attention(attention, channels, residual, **kwargs)

        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for i, (planes, stride) in enumerate(zip(STAGE_CHANNELS, STAGE_STRIDES, strict=True)):
            blocks = []
            for j in range(n):
                attn = make_attn(planes) if placement == "block" else None
                blocks.append(BasicBlock(in_planes, planes, stride if j == 0 else 1, attn))
                in_planes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            stage_attn = make_attn(planes) if placement == "stage" else None
            self.register_module(f"attn{i + 1}", stage_attn)
        # A named seam with no weights: the last map whatever the variant or placement
        # (attn3 exists only for stage placement), so Grad-CAM reads one layer for all.
        self.feature_map = nn.Identity()
        self.linear = nn.Linear(STAGE_CHANNELS[-1], num_classes)
        skip: set[int] = set()
        if attention_init == "default":
            skip = {id(sub) for attn in self.attention_modules for sub in attn.modules()}
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and id(m) not in skip:
                nn.init.kaiming_normal_(m.weight)

    @property
    def cam_layer(self) -> nn.Module:
        """`feature_map`: the last stage's output, attention included (Grad-CAM's layer)."""
        return self.feature_map

    @property
    def attention_modules(self) -> list[nn.Module]:
        """Every attention module (its residual wrapper), in forward order."""
        found: list[nn.Module] = []
        for i in (1, 2, 3):
            for block in getattr(self, f"layer{i}"):
                if block.attn is not None:
                    found.append(block.attn)
            stage_attn = getattr(self, f"attn{i}")
            if stage_attn is not None:
                found.append(stage_attn)
        return found

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, 64, H/4, W/4) map before pooling (the output of `cam_layer`)."""
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 16, H, W)
        for i in (1, 2, 3):
            x = getattr(self, f"layer{i}")(x)
            stage_attn = getattr(self, f"attn{i}")
            if stage_attn is not None:
                x = stage_attn(x)
        return self.feature_map(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)  # (B, 64, H/4, W/4)
        x = x.mean(dim=(2, 3))  # (B, 64) global average pooling
        return self.linear(x)  # (B, num_classes) logits


@register_model("cifar_resnet")
def cifar_resnet(
    *,
    depth: int = 20,
    in_channels: int = 3,
    num_classes: int = 10,
    attention: str = "none",
    placement: str = "stage",
    residual: str = "plain",
    reduction: int = 16,
    heads: int = 8,
    scaled: bool = False,
    attention_init: str = "default",
) -> CifarResNet:
    """He et al. 2016 CIFAR ResNet of any depth 6n + 2, with CNNtention's attention.

    attention: any registry block ("selfatt", "mhsa", "cbam", "se", "eca", "spatial",
    "spatial7") or "none"; placement: "stage" (CNNtention) or "block"; residual: "none",
    "plain" or "weighted"; reduction: se/cbam r (hidden max(1, C // r)); heads: mhsa;
    scaled: selfatt's 1/sqrt(d) (CNNtention: off); attention_init: "default" (the blocks' own)
    or "kaiming" (CNNtention's code: the backbone's Kaiming-normal on the attention too).
    """
    return CifarResNet(
        depth=depth,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        placement=placement,
        residual=residual,
        reduction=reduction,
        heads=heads,
        scaled=scaled,
        attention_init=attention_init,
    )


def _fixed_depth(depth: int) -> Callable[..., CifarResNet]:
    """A builder with `depth` fixed: the thin variants of `cifar_resnet`.

    Its signature is `cifar_resnet`'s without `depth`, so config validation (which reads
    the builder's signature) refuses `model.depth` on a fixed-depth name.
    """

    def builder(**kwargs: Any) -> CifarResNet:
        return cifar_resnet(depth=depth, **kwargs)

    full = inspect.signature(cifar_resnet)
    builder.__signature__ = full.replace(  # type: ignore[attr-defined]
        parameters=[p for name, p in full.parameters.items() if name != "depth"])
    builder.__name__ = builder.__qualname__ = f"cifar_resnet{depth}"
    builder.__doc__ = (
        f"ResNet-{depth} for CIFAR (He et al. 2016 §4.2), CNNtention's backbone; the arguments "
        f"are `cifar_resnet`'s without depth."
    )
    return builder


cifar_resnet20 = register_model("cifar_resnet20")(_fixed_depth(20))
cifar_resnet32 = register_model("cifar_resnet32")(_fixed_depth(32))
cifar_resnet44 = register_model("cifar_resnet44")(_fixed_depth(44))
cifar_resnet56 = register_model("cifar_resnet56")(_fixed_depth(56))
