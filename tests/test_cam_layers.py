"""Every 2-D model builder x every attention variant it accepts: Grad-CAM reads one backbone layer.

Why a registry-wide test: explain.py used to fall back to a model's last Conv2d, which for
mnist_cnn's "spatial", "se" and "cbam" variants was a conv *inside* the attention block
(SE's on a 1x1 map), so the Grad-CAM strips of one study read different layers per variant.
Each builder now declares `cam_layer`; this checks the declaration for every variant, so a
new builder or attention block cannot bring the problem back unseen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import pytest
import torch
from torch import nn

import trainables.blocks as blocks
import trainables.blocks.registry as blocks_registry
from trainables.blocks import AttentionResidual, LayerNorm2d, list_attn
from trainables.explain import cam_layer
from trainables.models import mnist_cnn, spectro_lenet, vgg_attention
from trainables.models.mnist_cnn import TokenSelfAttention2d
from trainables.models.registry import get_model, list_models, model_builder

REGISTRY_VARIANTS = ("none", *list_attn())  # builders that take any blocks-registry name


@dataclass(frozen=True)
class Builder:
    """How to build a small instance of one registered 2-D model and what it accepts."""

    kwargs: tuple[tuple[str, object], ...]  # small widths and inputs where the builder allows
    shape: tuple[int, ...]  # a small input it accepts
    variants: tuple[tuple[tuple[str, object], ...], ...]  # every attention setting it accepts
    inline: bool = True  # its attention rewrites the backbone's map (vgg's only reads it)
    registry: bool = False  # builds every attention through the blocks registry


def _attention(names: tuple[str, ...], **fixed: tuple[object, ...]) -> tuple:
    """Every `attention` name, crossed with each listed value of the other arguments."""
    combos: list[tuple[tuple[str, object], ...]] = [(("attention", name),) for name in names]
    for key, values in fixed.items():
        combos = [(*combo, (key, value)) for combo in combos for value in values]
    return tuple(combos)


_RESNET = Builder((), (1, 3, 8, 8), _attention(REGISTRY_VARIANTS, placement=("stage", "block")),
                  registry=True)
BUILDERS: dict[str, Builder] = {
    "mnist_cnn": Builder((("image_size", 16),), (1, 1, 16, 16),
                         _attention(mnist_cnn.ATTENTION_CHOICES)),
    "light_cnn": Builder((("widths", (8, 8)),), (1, 3, 8, 8), _attention(REGISTRY_VARIANTS),
                         registry=True),
    "cifar_resnet": Builder((("depth", 8),), (1, 3, 8, 8), _RESNET.variants, registry=True),
    "cifar_resnet20": _RESNET,
    "cifar_resnet32": _RESNET,
    "cifar_resnet44": _RESNET,
    "cifar_resnet56": _RESNET,
    "vgg16_attention": Builder((("width", 2),), (1, 3, 32, 32),
                               _attention(vgg_attention.ATTENTION_CHOICES), inline=False),
    "spectro_lenet": Builder((("image_size", 20),), (1, 3, 20, 20),
                             _attention(spectro_lenet.ATTENTION_CHOICES,
                                        batchnorm=(False, True))),
}
CASES = [(name, dict(variant)) for name, spec in BUILDERS.items() for variant in spec.variants]
CASE_IDS = [f"{name}-" + "-".join(str(v) for v in variant.values()) for name, variant in CASES]

# Attention modules the blocks registry does not build: its residual wrapper, the token and
# two-input blocks, mnist_cnn's token wrapper. Base classes cover every gate (RecordsMap).
ATTENTION_TYPES: tuple[type[nn.Module], ...] = (
    *(cls for cls in vars(blocks).values()
      if isinstance(cls, type) and issubclass(cls, nn.Module) and cls is not LayerNorm2d),
    AttentionResidual,
    TokenSelfAttention2d,
)
ATTENTION_NAME = re.compile(r"attn\d*|attention")  # spectro_lenet's "channel" is a Sequential


@contextmanager
def recording_registry(created: list[nn.Module]) -> Iterator[None]:
    """Every module the blocks registry builds while inside, appended to `created`."""
    originals = dict(blocks_registry._ATTN_REGISTRY)

    def recorder(factory):
        def build(*args, **kwargs):
            module = factory(*args, **kwargs)
            created.append(module)
            return module
        return build

    blocks_registry._ATTN_REGISTRY.update({k: recorder(f) for k, f in originals.items()})
    try:
        yield
    finally:
        blocks_registry._ATTN_REGISTRY.update(originals)


@cache
def built(name: str, variant: tuple[tuple[str, object], ...]) -> tuple[nn.Module, list[nn.Module]]:
    """The model (eval mode, seeded) and the modules the blocks registry built for it."""
    created: list[nn.Module] = []
    torch.manual_seed(0)
    with recording_registry(created):
        model = get_model(name, **dict(BUILDERS[name].kwargs), **dict(variant)).eval()
    return model, created


def attention_roots(model: nn.Module, created: list[nn.Module]) -> list[tuple[str, nn.Module]]:
    """(name, module) of every attention module: built by the registry, of an attention
    class, or held under an attention name."""
    made = {id(m) for m in created}
    return [(name, m) for name, m in model.named_modules()
            if id(m) in made or isinstance(m, ATTENTION_TYPES)
            or ATTENTION_NAME.fullmatch(name.rsplit(".", 1)[-1])]


def module_name(model: nn.Module, target: nn.Module) -> str | None:
    return next((name for name, m in model.named_modules() if m is target), None)


def test_every_registered_model_is_checked_or_a_video_model() -> None:
    """A new 2-D builder must join BUILDERS; the video models have no 2-D map to explain."""
    video = {n for n in list_models()
             if model_builder(n).__module__.startswith("trainables.models.video.")}
    assert video == {"frame_temporal", "r2plus1d", "r2plus1d_perceiver"}
    assert set(list_models()) - video == set(BUILDERS)


@pytest.mark.parametrize(("name", "variant"), CASES, ids=CASE_IDS)
def test_cam_layer_is_a_backbone_map_outside_attention(name: str, variant: dict) -> None:
    key = tuple(variant.items())
    model, created = built(name, key)
    layer = model.cam_layer
    assert cam_layer(model) is layer  # what explain() reads
    assert module_name(model, layer) not in (None, ""), "cam_layer is not a submodule"

    roots = attention_roots(model, created)
    if variant["attention"] == "none":
        assert roots == []
    else:  # the variant really adds attention, so the next check is not vacuous
        assert roots
        if BUILDERS[name].registry:
            assert created, "a registry variant built no registry block"
    for root_name, root in roots:
        assert all(layer is not m for m in root.modules()), f"cam_layer is inside {root_name}"

    order: list[str] = []
    seen: list[torch.Tensor] = []

    def at_cam(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        seen.append(out)
        order.append("<cam>")

    hooks = [root.register_forward_hook(lambda *_, n=n: order.append(n)) for n, root in roots]
    hooks.append(layer.register_forward_hook(at_cam))
    try:
        with torch.no_grad():
            model(torch.randn(*BUILDERS[name].shape))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) == 1, "cam_layer ran more than once: which call does Grad-CAM read?"
    out = seen[0]
    assert out.dim() == 4 and out.shape[0] == BUILDERS[name].shape[0]
    assert out.shape[2] > 1 and out.shape[3] > 1, f"not a spatial map: {tuple(out.shape)}"
    if BUILDERS[name].inline:  # the map Grad-CAM reads is the one the attention rewrote
        assert order[-1] == "<cam>", f"attention runs after cam_layer: {order}"


@pytest.mark.parametrize("name", list(BUILDERS))
def test_cam_layer_is_the_same_layer_for_every_variant(name: str) -> None:
    names = set()
    for variant in BUILDERS[name].variants:
        model, _ = built(name, variant)
        names.add(module_name(model, model.cam_layer))
    assert len(names) == 1, f"{name}: Grad-CAM reads {sorted(map(str, names))} across variants"


def test_mnist_cnn_reads_the_map_after_its_attention() -> None:
    """The review's case: not the spatial gate's 1x1 conv, SE's fc2 or CBAM's spatial conv."""
    for attention in ("spatial", "se", "cbam", "self"):
        model, _ = built("mnist_cnn", (("attention", attention),))
        assert model.cam_layer is model.feature_map
        assert not isinstance(model.cam_layer, nn.Conv2d)
