"""The spoken-digit spectrogram LeNet (baseline, CBAM, hybrid) and LayerNorm2d.

The three source configurations on 3- and 1-channel 128x128 input: forward, backward, finite
grads, exact parameter counts; the reused attention blocks; the Keras-style L2 term; the
Grad-CAM layer and recorded gates that `explain` reads; argument validation.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.blocks import CBAM, LayerNorm2d, SqueezeExcite
from trainables.explain import explain
from trainables.models import SpectroLeNet, get_model, list_models

SOURCE_CONFIGS: dict[str, dict[str, object]] = {
    "baseline": {"attention": "none"},
    "cbam": {"attention": "cbam", "batchnorm": True},
    "hybrid": {
        "attention": "channel",
        "batchnorm": True,
        "attention_dropout": 0.1,
        "dense_dropout": 0.5,
        "dense_l2": 1e-3,
    },
}
# Measured trainable parameter counts: (3x128x128, 1x128x128).
PARAM_COUNTS = {
    "baseline": (1_628_726, 1_628_426),
    "cbam": (1_629_069, 1_628_769),
    "hybrid": (1_628_915, 1_628_615),
}
SOURCE_HYBRID_PARAMS = 1_629_144  # Keras' count, BN moving statistics included


@pytest.fixture(autouse=True)
def one_thread():
    """Small convs on a shared CPU: one thread avoids contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(variant: str, **kwargs: object) -> SpectroLeNet:
    model = get_model("spectro_lenet", **{**SOURCE_CONFIGS[variant], **kwargs})
    assert isinstance(model, SpectroLeNet)
    return model


def test_registered() -> None:
    assert "spectro_lenet" in list_models()


@pytest.mark.parametrize("in_channels", [3, 1])
@pytest.mark.parametrize("variant", list(SOURCE_CONFIGS))
def test_forward_backward(variant: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = build(variant, in_channels=in_channels)
    model.train()
    x = torch.randn(2, in_channels, 128, 128)
    logits = model(x)
    assert logits.shape == (2, 10)
    loss = nn.functional.cross_entropy(logits, torch.tensor([3, 7]))
    reg = model.regularization_loss()
    if reg is not None:
        loss = loss + reg
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("variant", list(SOURCE_CONFIGS))
def test_parameter_counts(variant: str) -> None:
    rgb, mono = PARAM_COUNTS[variant]
    assert n_params(build(variant)) == rgb
    assert n_params(build(variant, in_channels=1)) == mono


def test_hybrid_matches_source_count() -> None:
    model = build("hybrid")
    ours = n_params(model)
    bn_stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("_mean", "_var")))
    assert bn_stats == 44  # Keras counts these as parameters
    assert abs(ours - SOURCE_HYBRID_PARAMS) / SOURCE_HYBRID_PARAMS < 1e-3
    assert abs(ours + bn_stats - SOURCE_HYBRID_PARAMS) / SOURCE_HYBRID_PARAMS < 1e-3


def test_flatten_size_and_names() -> None:
    model = build("baseline")
    assert model.head.fc1.in_features == 16 * 29 * 29 == 13456
    assert model.head.fc2.in_features == 120
    assert model.head.out.in_features == 84
    assert list(model.stage1._modules) == ["conv", "act", "feature_map", "pool"]
    hybrid = build("hybrid")
    assert list(hybrid.stage2._modules) == [
        "conv", "act", "bn", "attn", "drop", "feature_map", "pool"
    ]


def test_cbam_variant_reuses_the_block() -> None:
    model = build("cbam")
    cbams = [m for m in model.modules() if isinstance(m, CBAM)]
    assert cbams == [model.stage1.attn, model.stage2.attn]
    # max(1, C // 8): 6 -> 1 (clamped from 0), 16 -> 2; 7x7 spatial kernel.
    assert [c.channel.rd_channels for c in cbams] == [1, 2]
    assert all(c.spatial.conv.kernel_size == (7, 7) for c in cbams)
    assert isinstance(model.stage1.bn, nn.BatchNorm2d)


def test_channel_variant_is_se_plus_layer_norm() -> None:
    model = build("hybrid")
    for stage, channels, hidden in ((model.stage1, 6, 1), (model.stage2, 16, 2)):
        se, norm = stage.attn
        assert type(se) is SqueezeExcite
        assert se.rd_channels == hidden
        assert isinstance(norm, LayerNorm2d)
        assert norm.normalized_shape == (channels,)
        assert norm.eps == 1e-3
    assert not any(isinstance(m, CBAM) for m in model.modules())


def test_reduction_changes_hidden_width() -> None:
    model = build("cbam", reduction=2)
    assert [model.stage1.attn.channel.rd_channels, model.stage2.attn.channel.rd_channels] == [
        3,
        8,
    ]


def test_regularization_loss() -> None:
    assert build("baseline").regularization_loss() is None
    assert build("hybrid", dense_l2=0.0).regularization_loss() is None
    model = build("hybrid", dense_l2=2e-3)
    reg = model.regularization_loss()
    assert reg is not None and reg.dtype == torch.float32
    manual = 2e-3 * (model.head.fc1.weight.pow(2).sum() + model.head.fc2.weight.pow(2).sum())
    torch.testing.assert_close(reg, manual)
    reg.backward()
    touched = {n for n, p in model.named_parameters() if p.grad is not None}
    assert touched == {"head.fc1.weight", "head.fc2.weight"}
    torch.testing.assert_close(model.head.fc2.weight.grad, 2 * 2e-3 * model.head.fc2.weight)


def test_regularization_loss_float32_under_half_precision() -> None:
    model = build("hybrid").to(torch.bfloat16)
    reg = model.regularization_loss()
    assert reg is not None and reg.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, set()),
        ({"attention_dropout": 0.1}, {"stage1.drop", "stage2.drop"}),
        ({"dense_dropout": 0.5}, {"head.drop1", "head.drop2"}),
        (
            {"attention_dropout": 0.1, "dense_dropout": 0.5},
            {"stage1.drop", "stage2.drop", "head.drop1", "head.drop2"},
        ),
    ],
)
def test_dropout_only_when_asked(kwargs: dict[str, object], expected: set[str]) -> None:
    model = get_model("spectro_lenet", **kwargs)
    found = {n for n, m in model.named_modules() if isinstance(m, nn.Dropout)}
    assert found == expected


def test_source_dropout_rates() -> None:
    model = build("hybrid")
    assert model.stage1.drop.p == 0.1 and model.head.drop1.p == 0.5
    assert not any(isinstance(m, nn.Dropout) for m in build("cbam").modules())


@pytest.mark.parametrize("variant", list(SOURCE_CONFIGS))
def test_non_square_input(variant: str) -> None:
    model = build(variant, image_size=64, image_width=96, in_channels=1)
    # height 64 -> 60 -> 30 -> 26 -> 13; width 96 -> 92 -> 46 -> 42 -> 21.
    assert model.head.fc1.in_features == 16 * 13 * 21
    assert model(torch.randn(2, 1, 64, 96)).shape == (2, 10)


def test_smallest_input() -> None:
    model = get_model("spectro_lenet", image_size=16)
    assert model.head.fc1.in_features == 16
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 10)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"attention": "se"}, "attention"),
        ({"reduction": 0}, "reduction"),
        ({"reduction": 2.5}, "reduction"),
        ({"attention_dropout": 1.0}, "attention_dropout"),
        ({"attention_dropout": -0.1}, "attention_dropout"),
        ({"dense_dropout": 1.0}, "dense_dropout"),
        ({"dense_l2": -1e-3}, "dense_l2"),
        ({"dense_l2": float("nan")}, "dense_l2"),
        ({"in_channels": 0}, "in_channels"),
        ({"num_classes": 0}, "num_classes"),
        ({"image_size": 15}, "image_size"),
        ({"image_size": 128, "image_width": 15}, "image_width"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=rf"spectro_lenet.*{argument}"):
        get_model("spectro_lenet", **kwargs)


def test_cam_layer() -> None:
    """One layer for every variant: the map stage 2's pool reads, after BN and attention."""
    for model in (build("baseline"), get_model("spectro_lenet", batchnorm=True),
                  build("cbam"), build("hybrid")):
        assert model.cam_layer is model.stage2.feature_map


@pytest.mark.parametrize(
    ("variant", "prefix"), [("baseline", None), ("cbam", "attention/"), ("hybrid", "channel/")]
)
def test_explain(variant: str, prefix: str | None) -> None:
    torch.manual_seed(0)
    model = build(variant, in_channels=1, image_size=64, image_width=96)
    out = explain(model, torch.randn(3, 1, 64, 96))
    assert out["gradcam"].shape == (3, 64, 96)
    assert out["predictions"].shape == (3,)
    keys = [k for k in out if k.startswith(("attention/", "channel/"))]
    if prefix is None:
        assert keys == []
    else:
        assert {k.split("/")[0] + "/" for k in keys} == {prefix}
        assert len(keys) == 2  # one per stage
    if variant == "hybrid":
        assert out["channel/stage1.attn.se"].shape == (3, 6)
        assert out["channel/stage2.attn.se"].shape == (3, 16)
    if variant == "cbam":
        assert out["attention/stage2.attn"].shape == (3, 64, 96)
    assert all(p.grad is None for p in model.parameters())


def test_layer_norm_2d_matches_layer_norm_on_channels_last() -> None:
    torch.manual_seed(0)
    norm = LayerNorm2d(5)
    assert norm.eps == 1e-3
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    reference = nn.LayerNorm(5, eps=1e-3)
    reference.load_state_dict(norm.state_dict())
    x = torch.randn(2, 5, 4, 3)
    expected = reference(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)
    y = norm(x)
    assert y.shape == x.shape
    # Each pixel's channel vector is normalised (before the affine part).
    plain = LayerNorm2d(5, elementwise_affine=False)(x)
    torch.testing.assert_close(plain.mean(dim=1), torch.zeros(2, 4, 3), atol=1e-5, rtol=0)
