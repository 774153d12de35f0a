"""Video networks: the HMDB51 study's R(2+1)D-18 (+ Perceiver), the WLASL frame + temporal models.

Parameter counts are checked at full size on the meta device (no memory, no init cost)
against the source's reported figures; forward/backward on tiny clips checks shapes and that
every trainable parameter is built eagerly and receives a gradient; pretrained weights are
read from a monkeypatched torch hub cache, never downloaded.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.video import r2plus1d_18

from trainables.models import get_model, list_models
from trainables.models.registry import model_builder
from trainables.models.video.perceiver import (
    CrossAttentionBlock,
    FourierPositionFeatures,
    R2Plus1DPerceiver,
    SelfAttentionBlock,
)
from trainables.models.video.r2plus1d import cnn_output_shape, count_parameters
from trainables.models.video.weights import (
    MissingWeightsError,
    missing_weight_files,
    required_weight_files,
    weight_path,
)

# Tiny attention widths for the forward/backward tests.
TINY = {
    "num_latents": 8,
    "latent_dim": 32,
    "cross_head_dim": 8,
    "self_heads": 2,
    "self_head_dim": 8,
}


@pytest.fixture(autouse=True)
def few_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def build_meta(name: str, **kwargs: object) -> nn.Module:
    """Build at full size without allocating or initialising: counting needs no data."""
    with torch.device("meta"):
        return get_model(name, **kwargs)


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_registered():
    assert {"r2plus1d", "r2plus1d_perceiver", "frame_temporal"} <= set(list_models())


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    ("blocks", "exact", "source_m"),
    [(8, 31_300_125, 31.3), (7, 17_137_693, 17.1), (6, 7_804_601, 7.8), (4, 1_929_865, 1.9)],
)
def test_cnn_parameter_counts(blocks, exact, source_m):
    model = build_meta("r2plus1d", cnn_blocks=blocks)
    n = count_parameters(model.cnn)
    assert n == exact
    assert n / 1e6 == pytest.approx(source_m, rel=0.02)


def test_cnn_is_torchvision_minus_avgpool_and_fc():
    with torch.device("meta"):
        full = r2plus1d_18()
    model = build_meta("r2plus1d", cnn_blocks=8)
    assert count_parameters(model.cnn) == count_parameters(full) - count_parameters(full.fc)
    assert set(model.cnn.state_dict()) == {
        k for k in full.state_dict() if not k.startswith("fc.")
    }


@pytest.mark.parametrize(
    ("blocks", "exact"),
    [(8, 31_326_288), (7, 17_163_856), (6, 7_817_708), (4, 1_936_444)],
)
def test_baseline_parameter_count(blocks, exact):
    model = build_meta("r2plus1d", num_classes=51, cnn_blocks=blocks)
    channels = cnn_output_shape(blocks, 16, 112, 112)[0]
    assert count_parameters(model) == exact
    assert model.parameter_counts()["head"] == channels * 51 + 51


def test_cross_and_self_block_counts():
    model = build_meta("r2plus1d_perceiver", cross_blocks=1, self_per_cross=1)
    cross, self_block = model.attention.blocks
    assert isinstance(cross, CrossAttentionBlock)
    assert isinstance(self_block, SelfAttentionBlock)
    assert cross.norm_context.normalized_shape == (512 + 39,)  # 39 Fourier channels
    cross_n = count_parameters(cross) + model.attention.latents.numel()
    assert cross_n == 3_421_134
    assert cross_n / 1e6 == pytest.approx(3.4, rel=0.02)
    assert count_parameters(self_block) == 4_201_472
    assert count_parameters(self_block) / 1e6 == pytest.approx(4.2, rel=0.02)


@pytest.mark.parametrize(
    ("cross_blocks", "self_per_cross", "exact", "source_m"),
    [(1, 1, 7_624_142, 7.6), (1, 2, 11_825_614, 11.8), (1, 6, 28_631_502, 28.6),
     (2, 6, 57_130_396, 57.2)],
)
def test_attention_totals(cross_blocks, self_per_cross, exact, source_m):
    model = build_meta(
        "r2plus1d_perceiver", cross_blocks=cross_blocks, self_per_cross=self_per_cross
    )
    counts = model.parameter_counts()
    assert counts["attention"] == exact
    assert counts["attention"] / 1e6 == pytest.approx(source_m, rel=0.02)
    assert counts["cnn"] == 31_300_125
    assert counts["head"] == 512 * 51 + 51
    assert sum(counts.values()) == count_parameters(model)
    assert len(model.attention.blocks) == cross_blocks * (1 + self_per_cross)


def test_variants_layout():
    cross_only = build_meta("r2plus1d_perceiver", cross_blocks=1, self_per_cross=0)
    assert cross_only.attention.pool == "mean"
    assert cross_only.attention.cls_token is None
    assert count_parameters(cross_only.attention) == 3_421_134 + 1024  # + final LayerNorm
    self_only = build_meta("r2plus1d_perceiver", cross_blocks=0, self_per_cross=2, cnn_blocks=6)
    assert self_only.attention.pool == "mean"
    assert self_only.attention.fourier is None and self_only.attention.latents is None
    assert self_only.attention.width == 256  # the CNN's channels
    assert all(isinstance(b, SelfAttentionBlock) for b in self_only.attention.blocks)
    two = build_meta("r2plus1d_perceiver", cross_blocks=2, self_per_cross=6)
    assert two.attention.pool == "cls"
    crosses = [b for b in two.attention.blocks if isinstance(b, CrossAttentionBlock)]
    assert len(crosses) == 2 and crosses[0].attn.to_q.weight is not crosses[1].attn.to_q.weight
    assert isinstance(two.attention.blocks[7], CrossAttentionBlock)  # [C, 6S, C, 6S]


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("blocks", "shape", "tokens"),
    [(8, (512, 2, 7, 7), 98), (7, (512, 2, 7, 7), 98), (6, (256, 4, 14, 14), 784),
     (4, (128, 8, 28, 28), 6272)],
)
def test_cnn_token_shapes_16x112x112(blocks, shape, tokens):
    assert cnn_output_shape(blocks, 16, 112, 112) == shape
    assert math.prod(shape[1:]) == tokens
    model = build_meta("r2plus1d", cnn_blocks=blocks)  # meta: shapes propagate, nothing computes
    out = model.cnn(torch.empty(1, 3, 16, 112, 112, device="meta"))
    assert tuple(out.shape) == (1, *shape)


@pytest.mark.parametrize("blocks", [4, 8])
def test_cnn_shape_arithmetic_on_real_clips(blocks):
    model = get_model("r2plus1d", cnn_blocks=blocks).eval()
    with torch.no_grad():
        out = model.cnn(torch.randn(1, 3, 6, 40, 36))  # odd sizes exercise the rounding
    assert tuple(out.shape[1:]) == cnn_output_shape(blocks, 6, 40, 36)


def test_fourier_features_match_perceiver_convention():
    fourier = FourierPositionFeatures(axes=3, bands=6, max_freq=10.0)
    grid = (2, 3, 4)
    enc = fourier(grid, torch.device("cpu"), torch.float32)
    assert fourier.out_channels == 39
    assert enc.shape == (24, 39)
    freqs = torch.linspace(1.0, 5.0, 6)
    axes = [torch.linspace(-1.0, 1.0, n) for n in grid]
    for token, (i, j, k) in enumerate((i, j, k) for i in range(2) for j in range(3)
                                      for k in range(4)):
        for axis, pos in enumerate((axes[0][i], axes[1][j], axes[2][k])):
            feats = enc[token, 13 * axis: 13 * (axis + 1)]
            expected = torch.cat([torch.sin(math.pi * pos * freqs),
                                  torch.cos(math.pi * pos * freqs), pos.reshape(1)])
            torch.testing.assert_close(feats, expected)
    assert fourier(grid, torch.device("cpu"), torch.float32) is enc  # cached per shape


# ---------------------------------------------------------------- forward / backward

R2P1D_CASES: list[tuple[str, dict[str, object]]] = [
    ("r2plus1d", {"cnn_blocks": 8, "dropout": 0.1}),
    ("r2plus1d_perceiver", {"cnn_blocks": 6, "cross_blocks": 1, "self_per_cross": 0, **TINY}),
    ("r2plus1d_perceiver", {"cnn_blocks": 4, "cross_blocks": 0, "self_per_cross": 2, **TINY}),
    ("r2plus1d_perceiver", {"cnn_blocks": 7, "cross_blocks": 1, "self_per_cross": 1, **TINY}),
    ("r2plus1d_perceiver",
     {"cnn_blocks": 6, "cross_blocks": 2, "self_per_cross": 2, "dropout": 0.1, **TINY}),
]
R2P1D_IDS = ["baseline", "cross-only", "self-only", "1C+1S", "2C+2S"]


def assert_all_trainable_grads(model: nn.Module) -> None:
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"
    bad = [n for n, p in model.named_parameters()
           if p.requires_grad and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"


@pytest.mark.parametrize(("name", "kwargs"), R2P1D_CASES, ids=R2P1D_IDS)
def test_r2plus1d_forward_backward(name, kwargs):
    torch.manual_seed(0)
    model = get_model(name, num_classes=5, **kwargs).train()
    names_before = [n for n, _ in model.named_parameters()]
    x = torch.randn(2, 3, 8, 32, 32)
    out = model(x)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([0, 3])).backward()
    # Built eagerly: the forward created no parameter the optimizer would not have seen.
    assert [n for n, _ in model.named_parameters()] == names_before
    assert_all_trainable_grads(model)


def test_perceiver_channels_last_3d_matches_contiguous():
    torch.manual_seed(0)
    model = get_model("r2plus1d_perceiver", num_classes=3, cnn_blocks=6, **TINY).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last_3d)
        out = model(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_perceiver_bf16_autocast_runs():
    # Not smaller: on CPU, torchvision's R(2+1)D-18 alone gets non-finite bf16 gradients in
    # layer2's temporal convs for a 1x3x4x16x16 clip (fp32 is fine); 2x3x8x32x32 is clean.
    torch.manual_seed(0)
    model = get_model("r2plus1d_perceiver", num_classes=3, cnn_blocks=4, cross_blocks=2,
                      **TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 8, 32, 32))
    out.float().sum().backward()
    assert out.shape == (2, 3)
    assert_all_trainable_grads(model)


def test_perceiver_works_for_other_clip_sizes():
    torch.manual_seed(0)
    model = get_model("r2plus1d_perceiver", num_classes=4, cnn_blocks=4, **TINY).eval()
    with torch.no_grad():
        for shape in ((1, 3, 4, 16, 16), (1, 3, 6, 24, 40)):
            assert model(torch.randn(shape)).shape == (1, 4)


# ---------------------------------------------------------------- frame_temporal


@pytest.mark.parametrize("pooling", ["mean", "tcn", "attention"])
def test_frame_temporal(pooling):
    torch.manual_seed(0)
    model = get_model("frame_temporal", num_classes=7, pooling=pooling, tcn_channels=32,
                      tcn_levels=2)
    model.train()
    assert not model.backbone.training  # a frozen backbone stays in eval mode
    assert all(not m.training for m in model.backbone.modules())
    assert model.head.training
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert trainable(model) == trainable(model.pool) + trainable(model.head)
    running_mean = model.backbone.bn1.running_mean.clone()
    x = torch.randn(2, 3, 8, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    nn.functional.cross_entropy(out, torch.tensor([1, 6])).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert_all_trainable_grads(model)
    torch.testing.assert_close(model.backbone.bn1.running_mean, running_mean)  # BN untouched
    if pooling == "attention":
        weights = model.pool.last_weights
        assert weights.shape == (2, 8)
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))
        assert (weights >= 0).all()


def test_frame_temporal_trainable_counts_and_unfrozen():
    expected = {"mean": 5_130, "tcn": 1_511_690, "attention": 1_090_058}
    for pooling, n in expected.items():
        assert trainable(build_meta("frame_temporal", pooling=pooling)) == n
    unfrozen = build_meta("frame_temporal", pooling="mean", freeze_backbone=False)
    assert trainable(unfrozen) == 5_130 + 11_176_512
    unfrozen.train()
    assert unfrozen.backbone.training


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_frame_temporal_tcn_preserves_time():
    model = get_model("frame_temporal", pooling="tcn", tcn_channels=16, tcn_levels=3,
                      kernel_size=4).eval()  # even kernel: 'same' padding still keeps T
    feats = torch.randn(2, 5, 512)
    assert model.pool.blocks(feats.transpose(1, 2)).shape == (2, 16, 5)


def test_frame_temporal_attention_too_many_frames():
    model = get_model("frame_temporal", pooling="attention").eval()
    with pytest.raises(ValueError, match="64 frames"):
        model.pool(torch.randn(1, 65, 512))


# ---------------------------------------------------------------- validation


def test_bad_cnn_blocks():
    for name in ("r2plus1d", "r2plus1d_perceiver"):
        with pytest.raises(ValueError, match=r"cnn_blocks must be one of 4, 6, 7, 8"):
            get_model(name, cnn_blocks=5)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("frame_temporal", {"pooling": "max"}, r"unknown pooling 'max'.*'mean', 'tcn'"),
        ("frame_temporal", {"backbone": "vgg"}, r"unknown backbone 'vgg'"),
        ("r2plus1d_perceiver", {"pool": "max"}, r"unknown pool 'max'.*'auto', 'cls', 'mean'"),
        ("r2plus1d_perceiver", {"self_per_cross": 0, "pool": "cls"}, r"pool='cls' needs"),
    ],
)
def test_bad_options(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_model(name, **kwargs)


def test_builders_are_keyword_only_with_defaults():
    import inspect

    for name in ("r2plus1d", "r2plus1d_perceiver", "frame_temporal"):
        params = inspect.signature(model_builder(name)).parameters.values()
        assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in params)
        assert "num_classes" in inspect.signature(model_builder(name)).parameters


# ---------------------------------------------------------------- pretrained weights


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache: nothing found there, and nothing may be downloaded."""
    hub = tmp_path / "hub"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def test_missing_weights_error_names_path_and_url(hub_dir):
    path = hub_dir / "checkpoints" / "r2plus1d_18-91a641e6.pth"
    assert weight_path("r2plus1d_18") == path
    with pytest.raises(MissingWeightsError) as err:
        get_model("r2plus1d_perceiver", pretrained=True)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert "\n" not in message
    assert str(path) in message
    assert "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth" in message
    assert "or set model.pretrained=false to train from scratch" in message
    with pytest.raises(MissingWeightsError, match=r"resnet18-f37072fd\.pth"):
        get_model("frame_temporal", pretrained=True)


def test_pretrained_r2plus1d_loads_cached_file(hub_dir):
    torch.manual_seed(1)
    source = r2plus1d_18().state_dict()
    path = hub_dir / "checkpoints" / "r2plus1d_18-91a641e6.pth"
    path.parent.mkdir(parents=True)
    torch.save(source, path)
    model = get_model("r2plus1d_perceiver", pretrained=True, cnn_blocks=7, **TINY)
    loaded = model.cnn.state_dict()
    assert "layer4.0.conv1.0.0.weight" in loaded and "layer4.1.conv1.0.0.weight" not in loaded
    for key, tensor in loaded.items():
        assert torch.equal(tensor, source[key]), key
    fresh = get_model("r2plus1d", pretrained=False, cnn_blocks=7).cnn.state_dict()
    assert not torch.equal(fresh["stem.0.weight"], source["stem.0.weight"])


def test_pretrained_frame_backbone_loads_cached_file(hub_dir):
    torch.manual_seed(2)
    source = resnet18().state_dict()
    path = weight_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(source, path)
    model = get_model("frame_temporal", pretrained=True, pooling="mean")
    for key, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, source[key]), key


def test_required_weight_files(hub_dir):
    r2 = hub_dir / "checkpoints" / "r2plus1d_18-91a641e6.pth"
    rn = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    assert required_weight_files({"name": "r2plus1d_perceiver", "pretrained": True}) == [r2]
    assert required_weight_files({"name": "r2plus1d", "pretrained": True}) == [r2]
    assert required_weight_files({"name": "frame_temporal", "pretrained": True}) == [rn]
    assert required_weight_files({"name": "r2plus1d_perceiver", "pretrained": False}) == []
    assert required_weight_files({"name": "r2plus1d_perceiver"}) == []
    assert required_weight_files({"name": "cifar_resnet20", "pretrained": True}) == []
    assert missing_weight_files({"name": "r2plus1d", "pretrained": True}) == [r2]
    r2.parent.mkdir(parents=True)
    r2.write_bytes(b"")
    assert missing_weight_files({"name": "r2plus1d", "pretrained": True}) == []


def test_perceiver_class_exported():
    assert isinstance(build_meta("r2plus1d_perceiver"), R2Plus1DPerceiver)


def test_no_attention_at_all_is_the_plain_baseline():
    """The ablation grid's baseline row: the same builder with both depths at 0."""
    from trainables.models import get_model
    from trainables.models.video import R2Plus1DClassifier

    plain = get_model("r2plus1d_perceiver", num_classes=51, cross_blocks=0, self_per_cross=0)
    assert isinstance(plain, R2Plus1DClassifier)
    count = sum(p.numel() for p in plain.parameters())
    assert count == sum(p.numel() for p in get_model("r2plus1d", num_classes=51).parameters())
