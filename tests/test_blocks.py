"""Attention blocks: every registered map block on tiny inputs, plus the token attention math."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from trainables.blocks import (
    CBAM,
    RESIDUAL_MODES,
    AttentionResidual,
    ChannelGate,
    EfficientChannelAttention,
    MultiHeadSelfAttention,
    MultiHeadSelfAttention2d,
    PointwiseSpatialGate,
    SelfAttention2d,
    SpatialGate,
    SqueezeExcite,
    create_attn,
    eca_kernel_size,
    list_attn,
    make_divisible,
    register_attn,
    set_record_gate,
    wrap_attention,
)

CHANNELS = (16, 32, 64)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registry_names() -> None:
    assert set(list_attn()) == {"se", "cbam", "spatial", "spatial7", "eca", "selfatt", "mhsa"}


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("name", list_attn())
def test_map_block_forward_backward(name: str, channels: int) -> None:
    block = create_attn(name, channels)
    assert block is not None
    x = torch.randn(2, channels, 7, 5, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    params = list(block.parameters())
    assert params, f"{name} has no parameters"
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", [None, "none"])
def test_create_attn_none(name: str | None) -> None:
    assert create_attn(name, 8) is None


def test_create_attn_unknown_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="nope") as info:
        create_attn("nope", 8)
    for valid in ("none", "se", "cbam", "spatial", "spatial7", "eca", "selfatt", "mhsa"):
        assert repr(valid) in str(info.value)


def test_register_attn_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_attn("se")(SqueezeExcite)
    with pytest.raises(ValueError, match="already registered"):
        register_attn("none")(SqueezeExcite)


def test_create_attn_passes_kwargs() -> None:
    block = create_attn("cbam", 32, rd_ratio=1 / 8, rd_divisor=1)
    assert isinstance(block, CBAM)
    assert block.channel.rd_channels == 4


def test_cbam_zero_width_mlp_raises() -> None:
    with pytest.raises(ValueError) as info:
        CBAM(4, rd_ratio=1 / 8, rd_divisor=1)
    message = str(info.value)
    assert "channels=4" in message and "rd_ratio=0.125" in message
    assert "rd_channels" in message  # says what to do


@pytest.mark.parametrize(
    ("channels", "reduction", "hidden"), [(16, 8, 2), (16, 16, 1), (64, 16, 4), (32, 32, 1)]
)
def test_cbam_default_hidden_width_is_c_over_r(channels: int, reduction: int, hidden: int) -> None:
    # Woo et al.'s MLP is C -> C/r -> C; the old rd_divisor=8 default made every one of these 8.
    block = create_attn("cbam", channels, rd_ratio=1 / reduction)
    assert isinstance(block, CBAM)
    assert block.channel.rd_channels == hidden == block.channel.fc1.out_channels
    assert ChannelGate(channels, rd_ratio=1 / reduction).rd_channels == hidden
    assert CBAM(channels).channel.rd_channels == channels // 16  # the paper's r=16 default


def test_cbam_impossible_width_is_a_one_line_error_with_the_range() -> None:
    with pytest.raises(ValueError) as info:
        create_attn("cbam", 16, rd_ratio=1 / 32)  # CNNtention's r=32 on a 16-channel stage
    message = str(info.value)
    assert "\n" not in message and message.startswith("ChannelGate: ")
    assert "rd_ratio=0.03125" in message and "[0.0625, 1]" in message
    with pytest.raises(ValueError, match=r"^ChannelGate: rd_ratio must be in \(0, 1\].*got 16$"):
        create_attn("cbam", 16, rd_ratio=16)  # r passed where its inverse belongs
    with pytest.raises(ValueError, match=r"rd_ratio must be in \(0, 1\].*got 0$"):
        SqueezeExcite(16, rd_ratio=0)


def test_cbam_explicit_rd_channels_escapes_the_guard() -> None:
    assert CBAM(4, rd_ratio=1 / 8, rd_channels=1).channel.rd_channels == 1


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"channels": 64}, 8),  # 4 rounds up to the minimum, rd_divisor
        ({"channels": 256}, 16),
        ({"channels": 256, "rd_ratio": 1 / 4}, 64),
        ({"channels": 32, "rd_channels": 4}, 4),  # explicit width wins
        ({"channels": 64, "rd_ratio": 1 / 2, "rd_channels": 3}, 3),
        ({"channels": 32, "rd_ratio": 1 / 8, "rd_divisor": 1}, 4),
    ],
)
def test_se_rounding_follows_timm(kwargs: dict, expected: int) -> None:
    se = SqueezeExcite(**kwargs)
    assert se.rd_channels == expected
    assert se.fc1.out_channels == expected and se.fc2.in_channels == expected


def test_make_divisible_matches_timm() -> None:
    assert make_divisible(4, 8) == 8
    assert make_divisible(12, 8) == 16  # ties round up
    assert make_divisible(37, 8) == 40
    assert make_divisible(33.0, 16) == 32
    assert make_divisible(0.5, 1) == 1


def test_se_math() -> None:
    se = SqueezeExcite(16, rd_channels=4)
    x = torch.randn(2, 16, 5, 5)
    s = x.mean(dim=(2, 3))
    h = torch.relu(s @ se.fc1.weight.flatten(1).T + se.fc1.bias)
    gate = torch.sigmoid(h @ se.fc2.weight.flatten(1).T + se.fc2.bias)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


def test_cbam_is_channel_then_spatial() -> None:
    cbam = CBAM(16, rd_ratio=1 / 4)
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(cbam(x), cbam.spatial(cbam.channel(x)))
    spatial = cbam.spatial
    y = cbam.channel(x)
    pooled = torch.cat([y.mean(1, keepdim=True), y.amax(1, keepdim=True)], dim=1)
    torch.testing.assert_close(spatial(y), y * torch.sigmoid(spatial.conv(pooled)))


def test_param_counts_with_bias() -> None:
    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert count(SqueezeExcite(32, rd_channels=4)) == 292
    assert count(ChannelGate(32, rd_ratio=1 / 8, rd_divisor=1)) == 292
    assert count(SpatialGate(32)) == 99
    assert count(CBAM(32, rd_ratio=1 / 8, rd_divisor=1)) == 391
    assert count(PointwiseSpatialGate(32)) == 33


# Blocks are built inside each test, from their class: an instance made at collection time
# would carry `record_gate` and `last_gate` from one pytest run into the next in the same
# process (mutmut runs pytest several times per process, so the "off by default" check broke).
@pytest.mark.parametrize(
    ("cls", "gate_shape"),
    [
        (SqueezeExcite, (2, 16, 1, 1)),
        (ChannelGate, (2, 16, 1, 1)),
        (SpatialGate, (2, 1, 6, 4)),
        (PointwiseSpatialGate, (2, 1, 6, 4)),
        (CBAM, (2, 16, 6, 4)),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_record_gate(cls: type[nn.Module], gate_shape: tuple[int, ...]) -> None:
    block = cls(16)
    x = torch.randn(2, 16, 6, 4, requires_grad=True)
    block(x)
    assert block.last_gate is None  # off by default
    block.record_gate = True
    out = block(x)
    gate = block.last_gate
    assert gate is not None and tuple(gate.shape) == gate_shape
    assert not gate.requires_grad
    assert ((gate >= 0) & (gate <= 1)).all()
    torch.testing.assert_close(out, x * gate)


def test_set_record_gate_walks_submodules() -> None:
    model = nn.Sequential(SqueezeExcite(16), nn.ReLU(), CBAM(16))
    assert set_record_gate(model) == 4  # SE, CBAM and CBAM's two gates
    model(torch.randn(1, 16, 4, 4))
    assert model[2].spatial.last_gate.shape == (1, 1, 4, 4)
    set_record_gate(model, False)
    assert model[0].last_gate is None and not model[2].record_gate


def test_spatial_gate_rejects_even_kernel() -> None:
    with pytest.raises(ValueError, match="odd"):
        SpatialGate(8, kernel_size=6)


# --- token attention -------------------------------------------------------------------


def test_mhsa_shape_and_keras_param_count() -> None:
    mhsa = MultiHeadSelfAttention(64, heads=4, head_dim=64)
    assert sum(p.numel() for p in mhsa.parameters()) == 66_368
    assert mhsa(torch.randn(2, 25, 64)).shape == (2, 25, 64)


def test_mhsa_matches_manual_softmax_attention() -> None:
    dim, heads, d, n = 6, 2, 3, 5
    mhsa = MultiHeadSelfAttention(dim, heads=heads, head_dim=d).double()
    x = torch.randn(2, n, dim, dtype=torch.float64)
    q, k, v = mhsa.to_q(x), mhsa.to_k(x), mhsa.to_v(x)  # (B, N, heads*d)
    outs = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d)  # (B, N, N)
        outs.append(torch.softmax(scores, dim=-1) @ v[..., sl])  # (B, N, d)
    expected = mhsa.to_out(torch.cat(outs, dim=-1))
    torch.testing.assert_close(mhsa(x), expected)


def test_mhsa_mixes_tokens() -> None:
    mhsa = MultiHeadSelfAttention(8, heads=2, head_dim=4)
    x = torch.randn(1, 4, 8)
    y = x.clone()
    y[0, 3] += 1.0  # change only the last token
    assert not torch.allclose(mhsa(x)[0, 0], mhsa(y)[0, 0])


def test_mhsa_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        MultiHeadSelfAttention(8, heads=2, head_dim=4)(torch.randn(1, 3, 7))


# --- map self-attention -----------------------------------------------------------------


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _flat(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv as a plain matmul over positions: (B, C, H, W) -> (B, N, C_out)."""
    w = conv.weight.flatten(1)  # (C_out, C)
    return x.flatten(2).transpose(1, 2) @ w.T + conv.bias


def test_selfatt_matches_manual_unscaled_softmax() -> None:
    sa = SelfAttention2d(6).double()
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    q, k, v = _flat(sa.to_q, x), _flat(sa.to_k, x), _flat(sa.to_v, x)  # (B, N, C)
    attn = torch.softmax(q @ k.transpose(1, 2), dim=-1)  # no 1/sqrt(d)
    expected = (attn @ v).transpose(1, 2).reshape(2, 6, 3, 4)
    assert torch.allclose(sa(x), expected)
    sa.scaled, sa.scale = True, 6**-0.5
    scaled = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(6), dim=-1) @ v
    assert torch.allclose(sa(x), scaled.transpose(1, 2).reshape(2, 6, 3, 4))


def test_selfatt_scaled_and_unscaled_differ() -> None:
    unscaled = SelfAttention2d(16)
    scaled = SelfAttention2d(16, scaled=True)
    scaled.load_state_dict(unscaled.state_dict())
    x = torch.randn(2, 16, 4, 4)
    assert not torch.allclose(unscaled(x), scaled(x), atol=1e-4)


def test_selfatt_param_count_and_qk_channels() -> None:
    c = 16
    assert _count(SelfAttention2d(c)) == 3 * (c * c + c)
    sa = SelfAttention2d(c, qk_channels=2)  # SAGAN's own C/8 layout
    assert _count(sa) == 2 * (c * 2 + 2) + (c * c + c)
    assert sa(torch.randn(1, c, 3, 3)).shape == (1, c, 3, 3)
    assert _count(SelfAttention2d(c, bias=False)) == 3 * c * c


@pytest.mark.parametrize(
    "build",
    [
        lambda: SelfAttention2d(8),
        lambda: SelfAttention2d(8, scaled=True),
        lambda: MultiHeadSelfAttention2d(8, heads=2),
    ],
    ids=["selfatt", "selfatt-scaled", "mhsa"],
)
def test_map_attention_records_received_attention(build: Callable[[], nn.Module]) -> None:
    block = build()
    x = torch.randn(2, 8, 5, 3)
    fused = block(x)
    assert block.last_gate is None  # off by default
    block.record_gate = True
    explicit = block(x)
    gate = block.last_gate
    assert gate is not None and gate.shape == (2, 1, 5, 3)
    assert not gate.requires_grad and (gate >= 0).all()
    # The mean over queries of a row-stochastic matrix: one unit of attention per image.
    torch.testing.assert_close(gate.sum(dim=(1, 2, 3)), torch.ones(2))
    torch.testing.assert_close(explicit, fused)  # recording does not change the output


def test_mhsa2d_matches_manual_heads() -> None:
    c, heads, d = 6, 2, 3
    mhsa = MultiHeadSelfAttention2d(c, heads=heads).double()
    assert mhsa.head_channels == d
    x = torch.randn(2, c, 3, 4, dtype=torch.float64)
    q, k, v = _flat(mhsa.to_q, x), _flat(mhsa.to_k, x), _flat(mhsa.to_v, x)  # (B, N, 6)
    outs = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d)  # (B, N, N)
        outs.append(torch.softmax(scores, dim=-1) @ v[..., sl])  # (B, N, d)
    mixed = torch.cat(outs, dim=-1).transpose(1, 2).reshape(2, c, 3, 4)
    torch.testing.assert_close(mhsa(x), mhsa.to_out(mixed))


def test_mhsa2d_param_counts() -> None:
    c = 16
    assert _count(MultiHeadSelfAttention2d(c)) == 4 * (c * c + c)  # 8 heads of 2: inner == C
    assert _count(MultiHeadSelfAttention2d(c, heads=2, head_channels=4)) == 4 * (c * 8) + 3 * 8 + c


def test_mhsa2d_indivisible_channels_raise() -> None:
    with pytest.raises(ValueError) as info:
        MultiHeadSelfAttention2d(10, heads=8)
    message = str(info.value)
    assert "channels=10" in message and "heads=8" in message and "head_channels" in message
    block = MultiHeadSelfAttention2d(10, heads=8, head_channels=2)
    assert block(torch.randn(1, 10, 2, 2)).shape == (1, 10, 2, 2)


def test_mhsa2d_one_head_is_scaled_selfatt_then_projection() -> None:
    c = 8
    mhsa = MultiHeadSelfAttention2d(c, heads=1)
    sa = SelfAttention2d(c, scaled=True)
    for name in ("to_q", "to_k", "to_v"):
        getattr(sa, name).load_state_dict(getattr(mhsa, name).state_dict())
    x = torch.randn(2, c, 4, 3)
    torch.testing.assert_close(mhsa(x), mhsa.to_out(sa(x)))


def test_map_attention_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"channels must be >= 1"):
        SelfAttention2d(0)
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        SelfAttention2d(8)(torch.randn(1, 4, 3, 3))
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        MultiHeadSelfAttention2d(8, heads=2)(torch.randn(8, 3, 3))


def test_map_attention_mixes_positions() -> None:
    for block in (SelfAttention2d(4), MultiHeadSelfAttention2d(4, heads=2)):
        x = torch.randn(1, 4, 3, 3)
        y = x.clone()
        y[0, :, 2, 2] += 1.0  # change only the last position
        assert not torch.allclose(block(x)[0, :, 0, 0], block(y)[0, :, 0, 0])


# --- ECA --------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "k"), [(1, 1), (16, 3), (32, 3), (64, 3), (256, 5)])
def test_eca_kernel_size_follows_paper(channels: int, k: int) -> None:
    assert eca_kernel_size(channels) == k
    eca = EfficientChannelAttention(channels)
    assert eca.kernel_size == k and eca.conv.kernel_size == (k,)
    assert _count(eca) == k  # one 1-D kernel, no bias


def test_eca_explicit_kernel_and_math() -> None:
    eca = EfficientChannelAttention(8, kernel_size=5)
    assert _count(eca) == 5
    x = torch.randn(2, 8, 3, 3)
    s = x.mean(dim=(2, 3))  # (B, C)
    w = eca.conv.weight.view(5)
    padded = torch.nn.functional.pad(s, (2, 2))
    conv = torch.stack([padded[:, i : i + 5] @ w for i in range(8)], dim=1)  # (B, C)
    torch.testing.assert_close(eca(x), x * torch.sigmoid(conv)[:, :, None, None])
    with pytest.raises(ValueError, match="odd"):
        EfficientChannelAttention(8, kernel_size=4)


# --- residual wrapper -------------------------------------------------------------------


@pytest.mark.parametrize("name", list_attn())
def test_weighted_residual_is_identity_at_init(name: str) -> None:
    wrapped = wrap_attention(name, 16, residual="weighted")
    assert isinstance(wrapped, AttentionResidual)
    x = torch.randn(2, 16, 5, 4)
    assert torch.equal(wrapped(x), x)
    wrapped(x).square().sum().backward()
    assert wrapped.gamma.grad is not None and wrapped.gamma.grad.abs().item() > 0


def test_residual_modes() -> None:
    assert RESIDUAL_MODES == ("none", "plain", "weighted")
    block = SelfAttention2d(8)
    x = torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(AttentionResidual(block, "none")(x), block(x))
    torch.testing.assert_close(AttentionResidual(block, "plain")(x), x + block(x))
    weighted = AttentionResidual(block, "weighted")
    with torch.no_grad():
        weighted.gamma.fill_(0.5)
    torch.testing.assert_close(weighted(x), x + 0.5 * block(x))
    assert not hasattr(AttentionResidual(block, "plain"), "gamma")


def test_residual_bad_mode_lists_valid() -> None:
    for build in (
        lambda: AttentionResidual(nn.Identity(), "scaled"),
        lambda: wrap_attention(None, 8, residual="scaled"),
    ):
        with pytest.raises(ValueError, match="scaled") as info:
            build()
        for mode in RESIDUAL_MODES:
            assert repr(mode) in str(info.value)


def test_wrap_attention_builds_and_passes_kwargs() -> None:
    assert wrap_attention("none", 8) is None and wrap_attention(None, 8) is None
    wrapped = wrap_attention("mhsa", 16, residual="plain", heads=4)
    assert isinstance(wrapped, AttentionResidual) and wrapped.mode == "plain"
    assert isinstance(wrapped.block, MultiHeadSelfAttention2d) and wrapped.block.heads == 4


def test_set_record_gate_reaches_new_blocks() -> None:
    model = nn.Sequential(
        AttentionResidual(SelfAttention2d(16), "weighted"),
        AttentionResidual(MultiHeadSelfAttention2d(16), "plain"),
        EfficientChannelAttention(16),
    )
    assert set_record_gate(model) == 3
    model(torch.randn(1, 16, 4, 4))
    assert model[0].block.last_gate.shape == (1, 1, 4, 4)
    assert model[1].block.last_gate.shape == (1, 1, 4, 4)
    assert model[2].last_gate.shape == (1, 16, 1, 1)
    assert set_record_gate(model, False) == 3
    assert model[0].block.last_gate is None and model[2].last_gate is None
    assert not model[1].block.record_gate
