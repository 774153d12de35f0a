"""Image backbones (CIFAR ResNet, VGG16 attention, light CNN) and the Jetley / grid attention.

Every builder x every attention option: forward, backward, finite grads, one SGD step that
lowers the loss; exact parameter counts; the weighted residual's identity at init.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainables.blocks.attention_gate import GridAttentionGate
from trainables.blocks.helpers import set_record_gate
from trainables.blocks.linear_attention import LinearAttentionEstimator
from trainables.blocks.registry import list_attn
from trainables.blocks.residual import AttentionResidual
from trainables.models import CifarResNet, LightCNN, VGGAttention, get_model, list_models
from trainables.models.cifar_resnet import cifar_resnet20

MAP_ATTENTION = ["none", *list_attn()]  # every registry block, plus the baseline
CNNTENTION_ATTENTION = ["none", "selfatt", "mhsa", "cbam", "se", "eca", "spatial", "spatial7"]
VGG_ATTENTION = ["none", "linear", "gate"]

# (builder, kwargs, input shape) for every builder x attention option; tiny widths for VGG.
CASES: list[tuple[str, dict[str, object], tuple[int, int, int, int]]] = [
    *[("cifar_resnet20", {"attention": a}, (2, 3, 32, 32)) for a in CNNTENTION_ATTENTION],
    *[
        ("cifar_resnet20", {"attention": a, "in_channels": 1}, (2, 1, 28, 28))
        for a in CNNTENTION_ATTENTION
    ],
    ("cifar_resnet20", {"attention": "selfatt", "placement": "block"}, (2, 3, 32, 32)),
    ("cifar_resnet20", {"attention": "cbam", "residual": "weighted"}, (2, 3, 32, 32)),
    ("cifar_resnet20", {"attention": "mhsa", "residual": "none"}, (2, 3, 32, 32)),
    *[("vgg16_attention", {"attention": a, "width": 8}, (2, 3, 32, 32)) for a in VGG_ATTENTION],
    (
        "vgg16_attention",
        {"attention": "linear", "normalize": "sigmoid", "width": 8},
        (2, 3, 32, 32),
    ),
    *[
        ("light_cnn", {"attention": a, "widths": (8, 16, 32)}, (2, 3, 32, 32))
        for a in MAP_ATTENTION
    ],
    ("light_cnn", {"attention": "selfatt", "widths": [8, 16], "residual": "plain"}, (2, 3, 32, 32)),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw, _ in CASES]


@pytest.fixture(autouse=True)
def one_thread():
    """Small convs on a shared CPU: one thread is ~50x faster than contended threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(name: str, kwargs: dict[str, object], num_classes: int = 10) -> nn.Module:
    kwargs = dict(kwargs)
    if name == "light_cnn":
        kwargs.setdefault("dropout", 0.0)  # the SGD test needs the same function twice
    return get_model(name, num_classes=num_classes, **kwargs)


def test_registry_lists_the_image_models() -> None:
    names = set(list_models())
    for name in (
        "cifar_resnet",
        "cifar_resnet20",
        "cifar_resnet32",
        "cifar_resnet44",
        "cifar_resnet56",
        "vgg16_attention",
        "light_cnn",
    ):
        assert name in names


@pytest.mark.parametrize("name", ["cifar_resnet20", "vgg16_attention", "light_cnn"])
def test_builders_are_keyword_only(name: str) -> None:
    from trainables.models.registry import model_builder

    with pytest.raises(TypeError):
        model_builder(name)(3)


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=CASE_IDS)
def test_forward_backward_finite(name: str, kwargs: dict[str, object], shape: tuple) -> None:
    torch.manual_seed(0)
    model = build(name, kwargs, num_classes=7).train()
    x = torch.randn(*shape)
    out = model(x)
    assert out.shape == (shape[0], 7)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([1, 5])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=CASE_IDS)
def test_one_sgd_step_reduces_loss(name: str, kwargs: dict[str, object], shape: tuple) -> None:
    torch.manual_seed(0)
    model = build(name, kwargs).train()
    x = torch.randn(8, *shape[1:])
    y = torch.randint(0, 10, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():  # train mode again: BN uses this batch's statistics both times
        after = F.cross_entropy(model(x), y)
    assert after.item() < loss.item()


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=CASE_IDS)
def test_cam_layer_output_is_a_map(name: str, kwargs: dict[str, object], shape: tuple) -> None:
    model = build(name, kwargs).eval()
    seen: list[torch.Tensor] = []
    handle = model.cam_layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        model(torch.randn(*shape))
    handle.remove()
    assert len(seen) == 1 and seen[0].dim() == 4 and seen[0].shape[0] == shape[0]


# ----------------------------------------------------------------------------- CIFAR ResNet

RESNET_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018}  # He et al. Table 6
# ResNet-20, CIFAR-10, residual="plain", placement="stage", reduction 16, 8 heads.
RESNET20_ATTENTION_PARAMS = {
    "none": 269_722,
    "se": 270_513,  # rd 1/2/4: 49 + 162 + 580
    "cbam": 270_810,  # SE's MLP + 3 x 7x7 spatial conv (99)
    "selfatt": 286_186,  # 3 x (q, k, v: C -> C with bias): 816 + 3,168 + 12,480
    "mhsa": 291_674,  # q, k, v, out: C -> C with bias: 1,088 + 4,224 + 16,640
    "eca": 269_731,  # 3 x Conv1d(k=3), no bias
    "spatial": 269_837,  # 1x1 conv C -> 1 with bias: 17 + 33 + 65
    "spatial7": 270_019,  # 3 x 99
}


@pytest.mark.parametrize("depth", sorted(RESNET_PARAMS))
def test_resnet_param_counts(depth: int) -> None:
    assert n_params(get_model(f"cifar_resnet{depth}")) == RESNET_PARAMS[depth]
    assert n_params(get_model("cifar_resnet", depth=depth)) == RESNET_PARAMS[depth]
    # MNIST: the 3x3 stem sees one channel instead of three (2 x 16 x 9 = 288 fewer).
    assert n_params(get_model(f"cifar_resnet{depth}", in_channels=1)) == RESNET_PARAMS[depth] - 288


def test_resnet20_is_0_27m() -> None:
    assert n_params(cifar_resnet20()) == 269_722


@pytest.mark.parametrize("attention", sorted(RESNET20_ATTENTION_PARAMS))
def test_resnet20_attention_param_counts(attention: str) -> None:
    model = cifar_resnet20(attention=attention)
    assert n_params(model) == RESNET20_ATTENTION_PARAMS[attention]
    # "weighted" adds one gamma per attention module.
    extra = 0 if attention == "none" else 3
    assert n_params(cifar_resnet20(attention=attention, residual="weighted")) == (
        RESNET20_ATTENTION_PARAMS[attention] + extra
    )


def test_resnet_depth_must_be_6n_plus_2() -> None:
    with pytest.raises(ValueError, match="depth=21"):
        get_model("cifar_resnet", depth=21)
    with pytest.raises(ValueError, match="depth=2"):
        get_model("cifar_resnet", depth=2)
    assert get_model("cifar_resnet", depth=8)(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_resnet_bad_arguments_name_the_values() -> None:
    with pytest.raises(ValueError, match=r"placement 'middle'.*'stage', 'block'"):
        cifar_resnet20(placement="middle")
    with pytest.raises(ValueError, match=r"residual 'gated'.*'none', 'plain', 'weighted'"):
        cifar_resnet20(attention="cbam", residual="gated")
    with pytest.raises(ValueError, match=r"Unknown attention block 'transformer'.*'selfatt'"):
        cifar_resnet20(attention="transformer")
    with pytest.raises(ValueError, match="reduction=0"):
        cifar_resnet20(attention="cbam", reduction=0)
    with pytest.raises(ValueError, match="in_channels=0"):
        cifar_resnet20(in_channels=0)


@pytest.mark.parametrize("attention", CNNTENTION_ATTENTION[1:])
def test_resnet_placement(attention: str) -> None:
    stage = cifar_resnet20(attention=attention)
    assert len(stage.attention_modules) == 3
    assert [stage.attn1, stage.attn2, stage.attn3] == stage.attention_modules
    assert stage.cam_layer is stage.feature_map
    block = cifar_resnet20(attention=attention, placement="block")
    assert len(block.attention_modules) == 9  # one after each of the 9 basic blocks
    assert block.attn1 is None and block.layer2[1].attn is block.attention_modules[4]
    assert block.cam_layer is block.feature_map
    assert (
        len(get_model("cifar_resnet32", attention=attention, placement="block").attention_modules)
        == 15
    )
    assert all(isinstance(m, AttentionResidual) for m in block.attention_modules)
    baseline = cifar_resnet20()
    assert baseline.attention_modules == [] and baseline.cam_layer is baseline.feature_map


@pytest.mark.parametrize("placement", ["stage", "block"])
@pytest.mark.parametrize("attention", CNNTENTION_ATTENTION[1:])
def test_weighted_residual_is_the_baseline_at_init(attention: str, placement: str) -> None:
    torch.manual_seed(0)
    baseline = cifar_resnet20().eval()
    model = cifar_resnet20(attention=attention, placement=placement, residual="weighted").eval()
    result = model.load_state_dict(baseline.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys  # the attention modules' own parameters
    assert all(".attn" in k or k.startswith("attn") for k in result.missing_keys)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), baseline(x))
        # The identity comes from gamma = 0, not from a block that does nothing.
        for m in model.attention_modules:
            m.gamma.fill_(0.5)
        assert not torch.allclose(model(x), baseline(x))


@pytest.mark.parametrize("attention", ["cbam", "se"])
def test_reduction_is_clamped_to_one_hidden_unit(attention: str) -> None:
    def hidden(m: AttentionResidual) -> int:
        gate = m.block.channel if attention == "cbam" else m.block
        return gate.rd_channels

    model = cifar_resnet20(attention=attention, reduction=32)
    assert model.reduction == 32
    # 16 // 32 = 0 -> 1; 32 // 32 = 1; 64 // 32 = 2.
    assert [hidden(m) for m in model.attention_modules] == [1, 1, 2]
    r8 = cifar_resnet20(attention=attention, reduction=8)
    assert [hidden(m) for m in r8.attention_modules] == [2, 4, 8]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_knobs_reach_only_their_block() -> None:
    mhsa = cifar_resnet20(attention="mhsa", heads=4, reduction=4)
    assert [m.block.heads for m in mhsa.attention_modules] == [4, 4, 4]
    selfatt = cifar_resnet20(attention="selfatt", scaled=True, heads=2)
    assert all(m.block.scaled for m in selfatt.attention_modules)
    assert not cifar_resnet20(attention="selfatt").attn1.block.scaled  # CNNtention: unscaled


def test_attention_init_kaiming_touches_only_the_attention() -> None:
    torch.manual_seed(0)
    default = cifar_resnet20(attention="selfatt")
    torch.manual_seed(0)
    kaiming = cifar_resnet20(attention="selfatt", attention_init="kaiming")
    # Kaiming-normal (fan_in) on a 1x1 C -> C conv has std sqrt(2 / C); PyTorch's default
    # (kaiming_uniform, a = sqrt(5)) has std 1 / sqrt(3 C).
    for module, std in ((default, (1 / (3 * 64)) ** 0.5), (kaiming, (2 / 64) ** 0.5)):
        assert module.attn3.block.to_q.weight.std().item() == pytest.approx(std, rel=0.1)
    # The backbone's init is the same either way: Kaiming-normal, fan_in.
    conv = default.layer3[0].conv1.weight
    assert conv.std().item() == pytest.approx((2 / (32 * 9)) ** 0.5, rel=0.1)
    with pytest.raises(ValueError, match=r"attention_init 'xavier'.*'default', 'kaiming'"):
        cifar_resnet20(attention_init="xavier")


def test_resnet_shortcut_has_no_parameters_and_keeps_akamaster_keys() -> None:
    model = cifar_resnet20()
    assert list(model.layer2[0].shortcut.parameters()) == []
    keys = set(model.state_dict())
    assert {
        "conv1.weight",
        "layer1.0.conv1.weight",
        "layer3.2.bn2.running_var",
        "linear.weight",
        "linear.bias",
    } <= keys


# ----------------------------------------------------------------------------- VGG16

VGG64_100_PARAMS = {"none": 19_758_756, "linear": 19_993_764, "gate": 20_510_631}
VGG8_10_PARAMS = {"none": 310_546, "linear": 314_066, "gate": 322_037}


@pytest.mark.parametrize("attention", VGG_ATTENTION)
def test_vgg_param_counts(attention: str) -> None:
    full = get_model("vgg16_attention", attention=attention, num_classes=100)
    assert n_params(full) == VGG64_100_PARAMS[attention]
    tiny = get_model("vgg16_attention", attention=attention, width=8)
    assert n_params(tiny) == VGG8_10_PARAMS[attention]


def test_vgg_linear_param_delta_is_projector_compat_and_classifier() -> None:
    delta = VGG64_100_PARAMS["linear"] - VGG64_100_PARAMS["none"]
    assert delta == 256 * 512 + 3 * 512 + (3 * 512 - 512) * 100


def test_vgg_attention_maps_have_the_three_resolutions() -> None:
    model = VGGAttention(attention="linear", width=8).eval()
    assert isinstance(model.attn1, LinearAttentionEstimator)
    assert model.attn1.projector is not None and model.attn2.projector is None
    assert set_record_gate(model) == 3
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    shapes = [m.last_gate.shape for m in (model.attn1, model.attn2, model.attn3)]
    assert shapes == [(2, 1, 32, 32), (2, 1, 16, 16), (2, 1, 8, 8)]
    sums = model.attn1.last_gate.sum(dim=(2, 3))
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    gated = VGGAttention(attention="gate", width=8).eval()
    assert isinstance(gated.attn3, GridAttentionGate)
    set_record_gate(gated)
    with torch.no_grad():
        gated(torch.randn(2, 3, 32, 32))
    assert gated.attn1.last_gate.shape == (2, 1, 32, 32)  # gated by the 8x8 block5 map


def test_vgg_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"attention 'grid'.*'none', 'linear', 'gate'"):
        get_model("vgg16_attention", attention="grid")
    with pytest.raises(ValueError, match=r"normalize 'tanh'.*'softmax', 'sigmoid'"):
        get_model("vgg16_attention", attention="linear", normalize="tanh")
    with pytest.raises(ValueError, match="width=0"):
        get_model("vgg16_attention", width=0)
    with pytest.raises(ValueError, match="dropout"):
        get_model("vgg16_attention", dropout=1.0)


def test_vgg_accepts_larger_inputs() -> None:
    model = VGGAttention(attention="linear", width=8).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


# ----------------------------------------------------------------------------- light CNN


def test_light_cnn_param_counts() -> None:
    # conv (no bias) + BN per stage: 928 + 18,560 + 73,984; Linear(128, 10): 1,290.
    assert n_params(get_model("light_cnn", attention="none")) == 94_762
    assert n_params(get_model("light_cnn")) == 94_762 + 3 * 99  # three 7x7 spatial gates


def test_light_cnn_gate_multiplies_without_residual() -> None:
    model = LightCNN(widths=[8], dropout=0.0).eval()
    stage = model.stages[0]
    assert isinstance(stage.attn, AttentionResidual) and stage.attn.mode == "none"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        feat = stage.act(stage.bn(stage.conv(x)))
        gate = stage.attn.block.compute_gate(feat)
        assert torch.allclose(stage(x), feat * gate)


def test_light_cnn_widths_and_errors() -> None:
    assert LightCNN(widths=[4, 8]).widths == (4, 8)
    assert LightCNN(widths=(4, 8, 16, 32)).classify.in_features == 32
    with pytest.raises(ValueError, match=r"widths.*\[\]"):
        LightCNN(widths=[])
    with pytest.raises(ValueError, match=r"widths.*\[8, 0\]"):
        LightCNN(widths=[8, 0])
    with pytest.raises(ValueError, match=r"widths.*\[8.5\]"):
        LightCNN(widths=[8.5])
    with pytest.raises(ValueError, match="Unknown attention block 'nope'"):
        LightCNN(attention="nope")


# ----------------------------------------------------------------------------- attention blocks


def test_linear_attention_softmax_sums_to_one_and_pools() -> None:
    torch.manual_seed(0)
    est = LinearAttentionEstimator(16, 32)
    local = torch.randn(3, 16, 6, 5)
    g = torch.randn(3, 32)
    a, pooled = est(local, g)
    assert a.shape == (3, 1, 6, 5) and pooled.shape == (3, 32)
    sums = a.sum(dim=(2, 3))
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)
    projected = est.projector(local)
    assert torch.allclose(pooled, (a * projected).sum(dim=(2, 3)), atol=1e-5)
    a4, pooled4 = est(local, g[:, :, None, None])  # (B, Cg, 1, 1) means the same
    assert torch.equal(a, a4) and torch.equal(pooled, pooled4)


def test_linear_attention_sigmoid_map_and_mean() -> None:
    torch.manual_seed(0)
    est = LinearAttentionEstimator(8, 8, normalize="sigmoid")
    assert est.projector is None
    local = torch.randn(2, 8, 4, 4)
    a, pooled = est(local, torch.randn(2, 8, 1, 1))
    assert ((a > 0) & (a < 1)).all()
    assert torch.allclose(pooled, (a * local).mean(dim=(2, 3)), atol=1e-6)
    est.record_gate = True
    est(local, torch.randn(2, 8))
    assert est.last_gate is not None and est.last_gate.shape == (2, 1, 4, 4)


def test_linear_attention_errors() -> None:
    with pytest.raises(ValueError, match=r"'softmax', 'sigmoid'"):
        LinearAttentionEstimator(8, 8, normalize="tanh")
    est = LinearAttentionEstimator(8, 16)
    with pytest.raises(ValueError, match="expected g"):
        est(torch.randn(1, 8, 4, 4), torch.randn(1, 16, 2, 2))
    with pytest.raises(ValueError, match="expected l"):
        est(torch.randn(1, 16, 4, 4), torch.randn(1, 16))


def test_grid_gate_map_in_unit_interval_and_upsamples() -> None:
    torch.manual_seed(0)
    gate = GridAttentionGate(16, 32)
    assert gate.inter_channels == 8
    local = torch.randn(2, 16, 16, 16)
    a, pooled = gate(local, torch.randn(2, 32, 4, 4))  # gating map 4x smaller than l
    assert a.shape == (2, 1, 16, 16) and pooled.shape == (2, 16)
    assert ((a > 0) & (a < 1)).all()
    expected = (a * local).sum(dim=(2, 3)) / a.sum(dim=(2, 3))
    assert torch.allclose(pooled, expected, atol=1e-5)
    a_vec, _ = gate(local, torch.randn(2, 32))  # a vector broadcasts over positions
    assert a_vec.shape == (2, 1, 16, 16)
    # Backward through the bilinear upsampling reaches W_g.
    gate(local, torch.randn(2, 32, 4, 4))[1].sum().backward()
    assert gate.phi.weight.grad is not None and gate.phi.weight.grad.abs().sum() > 0
    assert GridAttentionGate(1, 4).inter_channels == 1
    assert GridAttentionGate(8, 4, inter_channels=3).theta.out_channels == 3


def test_grid_gate_errors() -> None:
    with pytest.raises(ValueError, match="gating_channels=0"):
        GridAttentionGate(8, 0)
    with pytest.raises(ValueError, match="expected g"):
        GridAttentionGate(8, 4)(torch.randn(1, 8, 4, 4), torch.randn(1, 5, 2, 2))


def test_models_are_the_registered_classes() -> None:
    assert isinstance(get_model("cifar_resnet56"), CifarResNet)
    assert isinstance(get_model("vgg16_attention", width=4), VGGAttention)
    assert isinstance(get_model("light_cnn"), LightCNN)
