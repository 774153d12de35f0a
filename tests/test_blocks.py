"""Attention blocks: every registered map block on tiny inputs, plus the token attention math."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables.blocks import (
    CBAM,
    ChannelGate,
    MultiHeadSelfAttention,
    PointwiseSpatialGate,
    SpatialGate,
    SqueezeExcite,
    create_attn,
    list_attn,
    make_divisible,
    register_attn,
    set_record_gate,
)

CHANNELS = (16, 32, 64)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registry_names() -> None:
    assert set(list_attn()) == {"se", "cbam", "spatial", "spatial7"}


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
    for valid in ("none", "se", "cbam", "spatial", "spatial7"):
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


@pytest.mark.parametrize(
    ("block", "gate_shape"),
    [
        (SqueezeExcite(16), (2, 16, 1, 1)),
        (ChannelGate(16), (2, 16, 1, 1)),
        (SpatialGate(16), (2, 1, 6, 4)),
        (PointwiseSpatialGate(16), (2, 1, 6, 4)),
        (CBAM(16), (2, 16, 6, 4)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None,
)
def test_record_gate(block: nn.Module, gate_shape: tuple[int, ...]) -> None:
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
