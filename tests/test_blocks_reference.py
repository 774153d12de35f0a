"""Attention blocks against hand-written references of their published formulas.

Why a second file beside test_blocks.py: these tests pin each block to its paper's math on
tiny tensors with seeded weights (SE, CBAM, ECA, the pointwise gate, LayerNorm2d, Jetley's
estimator, the grid attention gate, the self-attention blocks), the defaults a config
relies on (r=16, a 7x7 spatial kernel, 8 heads, Keras' eps), which knob changes what, and
each refusal with its message. The references use plain tensor arithmetic and loops, not
the module's own layers, so a slip in a block cannot be copied into its reference.
Blocks are built inside each test, never at collection time (see test_record_gate).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainables.blocks import (
    CBAM,
    AttentionResidual,
    ChannelGate,
    EfficientChannelAttention,
    GateModule,
    GridAttentionGate,
    LayerNorm2d,
    LinearAttentionEstimator,
    MultiHeadSelfAttention,
    MultiHeadSelfAttention2d,
    PointwiseSpatialGate,
    RecordsMap,
    SelfAttention2d,
    SpatialGate,
    SqueezeExcite,
    create_attn,
    eca_kernel_size,
    list_attn,
    make_divisible,
    set_record_gate,
    wrap_attention,
)
from trainables.blocks.helpers import reduced_channels

D = torch.float64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _randomise(module: nn.Module, seed: int = 1, scale: float = 0.5) -> nn.Module:
    """Seeded weights of a useful size (default inits leave gates near 0.5 everywhere)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return module


def _x(*shape: int, seed: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=D)


def _dense(s: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 conv / Linear on (..., C_in) vectors by explicit matmul."""
    out = s @ w.reshape(w.shape[0], -1).T
    return out if b is None else out + b


def _conv_same(inp: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """Zero-padded 'same' 2-D cross-correlation by explicit loops: (B, Ci, H, W) -> (B, Co, H, W)."""
    bsz, _, h, wd = inp.shape
    co, _, k, _ = w.shape
    r = k // 2
    padded = torch.zeros(bsz, inp.shape[1], h + 2 * r, wd + 2 * r, dtype=inp.dtype)
    padded[:, :, r : r + h, r : r + wd] = inp
    out = torch.zeros(bsz, co, h, wd, dtype=inp.dtype)
    for i in range(h):
        for j in range(wd):
            patch = padded[:, :, i : i + k, j : j + k]  # (B, Ci, k, k)
            out[:, :, i, j] = torch.einsum("bcuv,ocuv->bo", patch, w)
    return out if b is None else out + b[None, :, None, None]


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


# --- helpers: rounding, validation, recording -------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((8.0, 8), {}, 8),
        ((8.88, 8), {}, 8),  # 8 >= 0.9 * 8.88: rounding down is allowed
        ((8.9, 8), {}, 16),  # 8 < 0.9 * 8.9: lost more than 10%, go up a step
        ((11.9, 8), {}, 16),
        ((20.0, 8), {}, 24),  # ties round up
        ((17.7, 8), {}, 16),  # 16 >= 0.9 * 17.7
        ((3.0, 8), {"min_value": 4}, 4),
        ((3.0, 8), {}, 8),  # min_value defaults to the divisor
        ((2.0, 1), {}, 2),
        ((2.6, 1), {}, 3),
        ((1.4, 1), {}, 2),  # 1 < 0.9 * 1.4
        ((8.88, 8), {"round_limit": 0.95}, 16),
        ((9.0, 8), {"round_limit": 0.0}, 8),
        ((40.0, 16), {}, 48),
        ((52.0, 8), {}, 56),  # half a step up rounds up, and 48 would be within 10%
        ((12.0, 8), {"round_limit": 0.0}, 16),  # ties round up by themselves
        ((10.0, 9), {}, 9),  # exactly 90% of v is still allowed
        ((16.0, 16), {"round_limit": 1.0}, 16),  # an exact multiple never moves
    ],
)
def test_make_divisible_cases(args: tuple, kwargs: dict, expected: int) -> None:
    assert make_divisible(*args, **kwargs) == expected


def test_make_divisible_defaults_are_timms() -> None:
    assert make_divisible(4.0) == 8  # divisor 8, minimum 8
    assert make_divisible(12.0) == 16
    assert make_divisible(35.5) == 32 and make_divisible(35.6) == 40  # 0.9 limit


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((1, 1.0, None, 1), 1),  # the smallest valid everything
        ((16, 1 / 16, None, 1), 1),  # exactly one channel is allowed
        ((16, 1.0, None, 1), 16),
        ((48, 1 / 16, None, 1), 3),
        ((48, 1 / 16, None, 2), 4),
        ((16, 1 / 16, None, 8), 8),
        ((4, 1 / 8, 1, 8), 1),  # rd_channels wins over everything
        ((4, 99.0, 7, 0), 7),  # ... and skips the ratio and divisor checks
    ],
)
def test_reduced_channels(args: tuple, expected: int) -> None:
    assert reduced_channels(*args, owner="X") == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 1 / 16, None, 1), "X: channels must be >= 1, got 0"),
        ((0, 1 / 16, 3, 1), "X: channels must be >= 1, got 0"),
        ((8, 1 / 16, 0, 1), "X: rd_channels must be >= 1, got 0"),
        ((8, 1 / 2, None, 0), "X: rd_divisor must be >= 1, got 0"),
        ((8, 0.0, None, 1), "X: rd_ratio must be in (0, 1] (1/r for a reduction r >= 1, "
                            "e.g. 1/16), got 0"),
        ((8, -0.5, None, 1), "X: rd_ratio must be in (0, 1] (1/r for a reduction r >= 1, "
                             "e.g. 1/16), got -0.5"),
        ((8, 1.5, None, 1), "X: rd_ratio must be in (0, 1] (1/r for a reduction r >= 1, "
                            "e.g. 1/16), got 1.5"),
        ((8, 1 / 16, None, 1), "X: channels=8 with rd_ratio=0.0625 (reduction 16) gives a "
                               "hidden width of 0.5, under one channel; rd_ratio must be in "
                               "[0.125, 1] (a reduction <= 8) here, or pass rd_channels "
                               "explicitly"),
    ],
)
def test_reduced_channels_errors(args: tuple, message: str) -> None:
    with pytest.raises(ValueError) as info:
        reduced_channels(*args, owner="X")
    assert str(info.value) == message


def test_gate_module_base_has_no_gate_and_records_nothing_by_default() -> None:
    with pytest.raises(NotImplementedError):
        GateModule()(torch.ones(1, 1, 1, 1))
    rec = RecordsMap()
    assert rec.record_gate is False and rec.last_gate is None
    gate = torch.ones(2, requires_grad=True) * 3
    rec._record(gate)
    assert rec.last_gate is None  # off: nothing kept
    rec.record_gate = True
    rec._record(gate)
    assert rec.last_gate is not None and not rec.last_gate.requires_grad
    assert torch.equal(rec.last_gate, torch.full((2,), 3.0))


def test_set_record_gate_on_keeps_and_off_drops_maps() -> None:
    model = nn.Sequential(SqueezeExcite(8, rd_channels=2), nn.Identity(), SpatialGate(8))
    assert set_record_gate(nn.Identity()) == 0
    assert set_record_gate(model, True) == 2
    model(torch.randn(1, 8, 3, 3))
    kept = model[0].last_gate
    assert set_record_gate(model) == 2  # switching on again keeps what is there
    assert model[0].last_gate is kept and model[0].record_gate is True
    assert set_record_gate(model, False) == 2
    assert model[0].last_gate is None and model[2].last_gate is None
    assert model[0].record_gate is False and model[2].record_gate is False


# --- squeeze-excite ----------------------------------------------------------------------


def _se_reference(x: torch.Tensor, se: SqueezeExcite, act=torch.relu, gate=torch.sigmoid):
    s = x.mean(dim=(2, 3))  # (B, C): global average pool
    h = act(_dense(s, se.fc1.weight, se.fc1.bias))
    g = gate(_dense(h, se.fc2.weight, se.fc2.bias))  # (B, C)
    return x * g[:, :, None, None], g


def test_se_matches_the_paper() -> None:
    se = _randomise(SqueezeExcite(12, rd_channels=3).double())
    x = _x(2, 12, 4, 3)
    expected, g = _se_reference(x, se)
    _close(se(x), expected)
    _close(se.compute_gate(x), g[:, :, None, None])


def test_se_defaults_ratio_16_divisor_8_relu_sigmoid_bias() -> None:
    se = SqueezeExcite(512)
    assert se.channels == 512 and se.rd_channels == 32  # 512 / 16, already a multiple of 8
    assert SqueezeExcite(384).rd_channels == 24 and SqueezeExcite(200).rd_channels == 16
    assert isinstance(se.act, nn.ReLU) and isinstance(se.gate, nn.Sigmoid)
    assert se.fc1.bias is not None and se.fc2.bias is not None
    assert se.fc1.in_channels == 512 and se.fc2.out_channels == 512
    assert se.fc1.kernel_size == (1, 1) and se.fc2.kernel_size == (1, 1)


def test_se_knobs_change_what_they_name() -> None:
    assert SqueezeExcite(64, rd_ratio=1 / 4).rd_channels == 16
    assert SqueezeExcite(48, rd_divisor=1).rd_channels == 3
    assert SqueezeExcite(48, rd_divisor=2).rd_channels == 4
    no_bias = SqueezeExcite(8, rd_channels=2, bias=False)
    assert no_bias.fc1.bias is None and no_bias.fc2.bias is None
    assert sum(p.numel() for p in no_bias.parameters()) == 2 * 8 * 2
    se = _randomise(SqueezeExcite(6, rd_channels=4, act_layer=nn.Tanh,
                                  gate_layer=nn.Hardsigmoid).double())
    x = _x(2, 6, 3, 3)
    expected, _ = _se_reference(x, se, act=torch.tanh, gate=F.hardsigmoid)
    _close(se(x), expected)
    with pytest.raises(ValueError, match=r"^SqueezeExcite: channels=4 "):
        SqueezeExcite(4)


def test_se_gate_depends_on_the_whole_map_only_through_its_mean() -> None:
    se = _randomise(SqueezeExcite(4, rd_channels=2).double())
    x = _x(1, 4, 3, 3)
    shuffled = x.flatten(2)[:, :, torch.randperm(9)].view(1, 4, 3, 3)
    _close(se.compute_gate(x), se.compute_gate(shuffled))
    assert se.compute_gate(x).shape == (1, 4, 1, 1)


# --- CBAM ----------------------------------------------------------------------------------


def _cbam_reference(x: torch.Tensor, cbam: CBAM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Woo et al. 2018, eqs. 1-3: F' = Mc(F) * F, F'' = Ms(F') * F'."""
    ch, sp = cbam.channel, cbam.spatial

    def mlp(s: torch.Tensor) -> torch.Tensor:  # the shared MLP, (B, C) -> (B, C)
        return _dense(torch.relu(_dense(s, ch.fc1.weight, ch.fc1.bias)), ch.fc2.weight, ch.fc2.bias)

    mc = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))[:, :, None, None]
    f1 = x * mc
    desc = torch.stack([f1.mean(dim=1), f1.amax(dim=1)], dim=1)  # (B, 2, H, W): [avg; max]
    ms = torch.sigmoid(_conv_same(desc, sp.conv.weight, sp.conv.bias))  # (B, 1, H, W)
    return f1 * ms, mc, ms


def test_cbam_matches_the_paper() -> None:
    cbam = _randomise(CBAM(8, rd_ratio=1 / 4).double())
    x = _x(2, 8, 5, 4)
    expected, mc, ms = _cbam_reference(x, cbam)
    _close(cbam(x), expected)
    _close(cbam.compute_gate(x), mc * ms)
    _close(cbam.channel.compute_gate(x), mc)
    _close(cbam.channel(x), x * mc)
    _close(cbam.spatial.compute_gate(x * mc), ms)


def test_cbam_defaults_follow_the_paper() -> None:
    cbam = CBAM(64)
    assert cbam.channels == 64 and cbam.spatial.channels == 64 and cbam.channel.channels == 64
    assert cbam.channel.rd_channels == 4  # r = 16, no rounding up to 8
    assert cbam.spatial.conv.kernel_size == (7, 7) and cbam.spatial.conv.padding == (3, 3)
    assert cbam.spatial.conv.in_channels == 2 and cbam.spatial.conv.out_channels == 1
    assert isinstance(cbam.channel.act, nn.ReLU) and isinstance(cbam.channel.gate, nn.Sigmoid)
    assert isinstance(cbam.spatial.gate, nn.Sigmoid)
    assert cbam.channel.fc1.bias is not None and cbam.spatial.conv.bias is not None
    assert ChannelGate(64).rd_channels == 4 and isinstance(ChannelGate(64).act, nn.ReLU)
    assert isinstance(ChannelGate(64).gate, nn.Sigmoid) and ChannelGate(64).fc1.bias is not None


def test_cbam_knobs_reach_both_gates() -> None:
    cbam = CBAM(16, rd_ratio=1 / 2, rd_divisor=4, spatial_kernel_size=3, act_layer=nn.Tanh,
                gate_layer=nn.Hardsigmoid, bias=False)
    assert cbam.channel.rd_channels == 8
    assert cbam.spatial.conv.kernel_size == (3, 3) and cbam.spatial.conv.padding == (1, 1)
    assert isinstance(cbam.channel.act, nn.Tanh)
    assert isinstance(cbam.channel.gate, nn.Hardsigmoid)
    assert isinstance(cbam.spatial.gate, nn.Hardsigmoid)
    assert cbam.channel.fc1.bias is None and cbam.channel.fc2.bias is None
    assert cbam.spatial.conv.bias is None
    assert CBAM(48, rd_ratio=1 / 16, rd_divisor=4).channel.rd_channels == 4  # 3 rounded up
    assert CBAM(48, rd_channels=5).channel.rd_channels == 5
    gate = ChannelGate(16, rd_ratio=1 / 2, rd_divisor=4, act_layer=nn.Tanh,
                       gate_layer=nn.Hardsigmoid, bias=False)
    assert gate.rd_channels == 8 and gate.fc1.bias is None and gate.fc2.bias is None
    assert isinstance(gate.act, nn.Tanh) and isinstance(gate.gate, nn.Hardsigmoid)
    assert ChannelGate(48, rd_channels=5).rd_channels == 5


def test_channel_gate_uses_both_avg_and_max() -> None:
    gate = _randomise(ChannelGate(4, rd_channels=2).double())
    x = _x(1, 4, 3, 3)
    y = x.clone()
    y[:, :, 0, 0] = y.amax(dim=(2, 3)) + 1.0  # raises the max only...
    y[:, :, 0, 1] -= 1.0 * 9  # ... and lowers the mean
    assert not torch.allclose(gate.compute_gate(x), gate.compute_gate(y))
    # The same mean and max, different layout: the same gate.
    perm = x.flatten(2)[:, :, torch.randperm(9)].view(1, 4, 3, 3)
    _close(gate.compute_gate(x), gate.compute_gate(perm))


def test_cbam_records_its_combined_and_its_parts_gates() -> None:
    cbam = _randomise(CBAM(8, rd_ratio=1 / 4).double())
    x = _x(2, 8, 3, 3)
    _, mc, ms = _cbam_reference(x, cbam)
    cbam.record_gate = True
    cbam(x)
    _close(cbam.last_gate, mc * ms)
    assert cbam.channel.last_gate is None and cbam.spatial.last_gate is None
    cbam.record_gate = False
    cbam.last_gate = None
    cbam.channel.record_gate = cbam.spatial.record_gate = True
    cbam(x)
    assert cbam.last_gate is None
    _close(cbam.channel.last_gate, mc)
    _close(cbam.spatial.last_gate, ms)


# --- spatial gates -------------------------------------------------------------------------


def test_spatial_gate_matches_cbam_spatial_attention() -> None:
    gate = _randomise(SpatialGate(5, kernel_size=3).double())
    x = _x(2, 5, 4, 6)
    desc = torch.stack([x.mean(dim=1), x.amax(dim=1)], dim=1)
    ms = torch.sigmoid(_conv_same(desc, gate.conv.weight, gate.conv.bias))
    _close(gate.compute_gate(x), ms)
    _close(gate(x), x * ms)


def test_spatial_gate_defaults_and_knobs() -> None:
    gate = SpatialGate(3)
    assert gate.channels == 3 and gate.conv.kernel_size == (7, 7) and gate.conv.padding == (3, 3)
    assert isinstance(gate.gate, nn.Sigmoid) and gate.conv.bias is not None
    one = SpatialGate(3, kernel_size=1, gate_layer=nn.Hardsigmoid, bias=False)
    assert one.conv.kernel_size == (1, 1) and one.conv.padding == (0, 0)
    assert one.conv.bias is None and isinstance(one.gate, nn.Hardsigmoid)
    for bad in (0, -1, 4):
        with pytest.raises(ValueError) as info:
            SpatialGate(3, kernel_size=bad)
        assert str(info.value) == (
            f"SpatialGate: kernel_size must be a positive odd number (so 'same' padding "
            f"keeps the map size), got {bad}"
        )


def test_pointwise_spatial_gate_formula() -> None:
    gate = _randomise(PointwiseSpatialGate(4).double())
    x = _x(2, 4, 3, 2)
    logits = _dense(x.permute(0, 2, 3, 1), gate.conv.weight, gate.conv.bias)  # (B, H, W, 1)
    expected_gate = torch.sigmoid(logits).permute(0, 3, 1, 2)
    _close(gate.compute_gate(x), expected_gate)
    _close(gate(x), x * expected_gate)
    assert gate.channels == 4 and isinstance(gate.gate, nn.Sigmoid) and gate.conv.bias is not None
    plain = PointwiseSpatialGate(4, gate_layer=nn.Hardsigmoid, bias=False)
    assert plain.conv.bias is None and isinstance(plain.gate, nn.Hardsigmoid)
    assert PointwiseSpatialGate(1).conv.in_channels == 1
    with pytest.raises(ValueError) as info:
        PointwiseSpatialGate(0)
    assert str(info.value) == "PointwiseSpatialGate: channels must be >= 1, got 0"


# --- ECA -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "gamma", "beta", "k"),
    [(2, 2, 1, 1), (8, 2, 1, 3), (512, 2, 1, 5), (1024, 2, 1, 5), (2048, 2, 1, 7),
     (16, 1, 1, 5), (16, 2, 3, 3), (16, 2, 0, 3), (16, 3, 1, 1), (1, 1, 2, 3), (64, 2, -13, 3)],
)
def test_eca_kernel_size_formula(channels: int, gamma: int, beta: int, k: int) -> None:
    # |(log2 C + b) / gamma|, truncated, then made odd (up).
    assert eca_kernel_size(channels, gamma, beta) == k
    assert EfficientChannelAttention(channels, gamma=gamma, beta=beta).kernel_size == k


def test_eca_refusals() -> None:
    for bad in (0, -3):
        with pytest.raises(ValueError) as info:
            eca_kernel_size(bad)
        assert str(info.value) == f"EfficientChannelAttention: channels must be >= 1, got {bad}"
        with pytest.raises(ValueError) as info:
            EfficientChannelAttention(bad, kernel_size=3)
        assert str(info.value) == f"EfficientChannelAttention: channels must be >= 1, got {bad}"
    for bad in (0, -2):
        with pytest.raises(ValueError) as info:
            eca_kernel_size(8, gamma=bad)
        assert str(info.value) == f"EfficientChannelAttention: gamma must be > 0, got {bad}"
    for bad in (0, -1, 2):
        with pytest.raises(ValueError) as info:
            EfficientChannelAttention(8, kernel_size=bad)
        assert str(info.value) == (
            f"EfficientChannelAttention: kernel_size must be a positive odd number (so "
            f"'same' padding keeps the channel count), got {bad}"
        )


def test_eca_matches_a_1d_conv_across_channels() -> None:
    eca = _randomise(EfficientChannelAttention(6, kernel_size=3).double())
    assert eca.channels == 6 and eca.conv.padding == (1,) and eca.conv.bias is None
    x = _x(2, 6, 2, 3)
    s = x.mean(dim=(2, 3))  # (B, C)
    w = eca.conv.weight.view(3)
    logits = torch.zeros_like(s)
    for c in range(6):
        for j in range(3):
            src = c + j - 1
            if 0 <= src < 6:
                logits[:, c] += w[j] * s[:, src]
    gate = torch.sigmoid(logits)[:, :, None, None]
    _close(eca.compute_gate(x), gate)
    _close(eca(x), x * gate)
    assert isinstance(eca.gate, nn.Sigmoid)
    hard = EfficientChannelAttention(6, kernel_size=3, gate_layer=nn.Hardsigmoid)
    assert isinstance(hard.gate, nn.Hardsigmoid)


# --- LayerNorm2d ---------------------------------------------------------------------------


def test_layer_norm_2d_normalises_each_pixels_channels() -> None:
    norm = _randomise(LayerNorm2d(5).double())
    x = _x(2, 5, 3, 4) * 0.01  # small variance: eps matters
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-3)
    expected = expected * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]
    _close(norm(x), expected)
    assert norm.eps == 1e-3 and norm.normalized_shape == (5,)


def test_layer_norm_2d_knobs() -> None:
    bare = LayerNorm2d(3, eps=0.5, elementwise_affine=False).double()
    assert bare.weight is None and bare.bias is None and bare.eps == 0.5
    x = _x(1, 3, 2, 2)
    mean, var = x.mean(dim=1, keepdim=True), x.var(dim=1, unbiased=False, keepdim=True)
    _close(bare(x), (x - mean) / torch.sqrt(var + 0.5))
    assert sum(p.numel() for p in LayerNorm2d(3).parameters()) == 6


# --- map self-attention --------------------------------------------------------------------


def _tokens(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv on each position of (B, C, H, W): (B, N, C_out), positions row-major."""
    return _dense(x.flatten(2).transpose(1, 2), conv.weight, conv.bias)


def _softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
    scores = torch.einsum("bnd,bmd->bnm", q, k) * scale
    weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    weights = weights / weights.sum(dim=-1, keepdim=True)  # each query's row sums to 1
    return torch.einsum("bnm,bmd->bnd", weights, v), weights


@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize(("qk", "scaled"), [(None, False), (3, False), (3, True), (None, True)])
def test_selfatt_reference(qk: int | None, scaled: bool, record: bool) -> None:
    sa = _randomise(SelfAttention2d(5, qk_channels=qk, scaled=scaled).double())
    sa.record_gate = record
    x = _x(2, 5, 3, 2)
    d = 5 if qk is None else qk
    assert sa.qk_channels == d and sa.to_q.out_channels == d and sa.to_v.out_channels == 5
    scale = d**-0.5 if scaled else 1.0
    out, weights = _softmax_attention(_tokens(sa.to_q, x), _tokens(sa.to_k, x),
                                      _tokens(sa.to_v, x), scale)
    _close(sa(x), out.transpose(1, 2).reshape(2, 5, 3, 2))
    if record:
        _close(sa.last_gate, weights.mean(dim=1).view(2, 1, 3, 2))
    else:
        assert sa.last_gate is None


def test_selfatt_defaults_and_refusals() -> None:
    sa = SelfAttention2d(4)
    assert sa.channels == 4 and sa.qk_channels == 4 and sa.scaled is False and sa.scale == 1.0
    assert sa.to_q.bias is not None and sa.to_v.bias is not None
    assert SelfAttention2d(4, qk_channels=1).to_k.out_channels == 1
    no_bias = SelfAttention2d(4, bias=False)
    assert no_bias.to_q.bias is None and no_bias.to_k.bias is None and no_bias.to_v.bias is None
    assert SelfAttention2d(1).to_q.out_channels == 1
    for kwargs in ({"channels": 0}, {"channels": 4, "qk_channels": 0}):
        with pytest.raises(ValueError) as info:
            SelfAttention2d(**kwargs)
        got = kwargs.get("qk_channels", kwargs["channels"])
        assert str(info.value) == (
            f"SelfAttention2d: channels and qk_channels must be >= 1, got "
            f"channels={kwargs['channels']}, qk_channels={got}"
        )
    for bad in (torch.zeros(4, 3, 3), torch.zeros(1, 3, 3, 3)):
        with pytest.raises(ValueError) as info:
            sa(bad)
        assert str(info.value) == (
            f"SelfAttention2d: expected a map of shape (B, 4, H, W), got {tuple(bad.shape)}"
        )


@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize(("heads", "head_channels"), [(2, None), (3, 2), (1, None)])
def test_mhsa2d_reference(heads: int, head_channels: int | None, record: bool) -> None:
    mhsa = _randomise(MultiHeadSelfAttention2d(6, heads=heads, head_channels=head_channels)
                      .double())
    mhsa.record_gate = record
    d = 6 // heads if head_channels is None else head_channels
    assert mhsa.heads == heads and mhsa.head_channels == d and mhsa.scale == d**-0.5
    x = _x(2, 6, 2, 3)
    q, k, v = _tokens(mhsa.to_q, x), _tokens(mhsa.to_k, x), _tokens(mhsa.to_v, x)
    outs, maps = [], []
    for h in range(heads):  # channels h*d .. (h+1)*d - 1 are head h
        sl = slice(h * d, (h + 1) * d)
        out, weights = _softmax_attention(q[..., sl], k[..., sl], v[..., sl], d**-0.5)
        outs.append(out)
        maps.append(weights)
    mixed = torch.cat(outs, dim=-1)  # (B, N, heads*d)
    expected = _dense(mixed, mhsa.to_out.weight, mhsa.to_out.bias)  # (B, N, C)
    _close(mhsa(x), expected.transpose(1, 2).reshape(2, 6, 2, 3))
    if record:
        received = torch.stack(maps, dim=1).mean(dim=(1, 2))  # over heads and queries
        _close(mhsa.last_gate, received.view(2, 1, 2, 3))
    else:
        assert mhsa.last_gate is None


def test_mhsa2d_defaults_and_refusals() -> None:
    mhsa = MultiHeadSelfAttention2d(16)
    assert mhsa.channels == 16 and mhsa.heads == 8 and mhsa.head_channels == 2
    assert mhsa.to_out.in_channels == 16 and mhsa.to_out.out_channels == 16
    assert all(getattr(mhsa, n).bias is not None for n in ("to_q", "to_k", "to_v", "to_out"))
    bare = MultiHeadSelfAttention2d(4, heads=2, bias=False)
    assert all(getattr(bare, n).bias is None for n in ("to_q", "to_k", "to_v", "to_out"))
    assert MultiHeadSelfAttention2d(1, heads=1).head_channels == 1
    assert MultiHeadSelfAttention2d(3, heads=2, head_channels=1).to_q.out_channels == 2
    cases = [
        ({"channels": 0, "heads": 1}, "MultiHeadSelfAttention2d: channels and heads must be "
                                      ">= 1, got channels=0, heads=1"),
        ({"channels": 4, "heads": 0}, "MultiHeadSelfAttention2d: channels and heads must be "
                                      ">= 1, got channels=4, heads=0"),
        ({"channels": 6, "heads": 4}, "MultiHeadSelfAttention2d: channels=6 is not divisible "
                                      "by heads=4; pick heads that divide channels or pass "
                                      "head_channels explicitly"),
        ({"channels": 4, "heads": 2, "head_channels": 0},
         "MultiHeadSelfAttention2d: head_channels must be >= 1, got 0"),
        ({"channels": 2, "heads": 4}, "MultiHeadSelfAttention2d: channels=2 is not divisible "
                                      "by heads=4; pick heads that divide channels or pass "
                                      "head_channels explicitly"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as info:
            MultiHeadSelfAttention2d(**kwargs)
        assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        mhsa(torch.zeros(1, 8, 2, 2))
    assert str(info.value) == (
        "MultiHeadSelfAttention2d: expected a map of shape (B, 16, H, W), got (1, 8, 2, 2)"
    )


# --- token self-attention ------------------------------------------------------------------


def test_token_mhsa_reference_and_defaults() -> None:
    mhsa = MultiHeadSelfAttention(4)
    assert (mhsa.dim, mhsa.heads, mhsa.head_dim, mhsa.dropout) == (4, 8, 64, 0.0)
    assert mhsa.to_q.out_features == 512 and mhsa.to_out.in_features == 512
    assert all(getattr(mhsa, n).bias is not None for n in ("to_q", "to_k", "to_v", "to_out"))
    bare = MultiHeadSelfAttention(4, heads=2, head_dim=3, bias=False)
    assert all(getattr(bare, n).bias is None for n in ("to_q", "to_k", "to_v", "to_out"))
    mhsa = _randomise(MultiHeadSelfAttention(5, heads=3, head_dim=2).double())
    x = _x(2, 4, 5)
    q, k, v = (_dense(x, m.weight, m.bias) for m in (mhsa.to_q, mhsa.to_k, mhsa.to_v))
    outs = [_softmax_attention(q[..., h * 2 : h * 2 + 2], k[..., h * 2 : h * 2 + 2],
                               v[..., h * 2 : h * 2 + 2], 2**-0.5)[0] for h in range(3)]
    expected = _dense(torch.cat(outs, dim=-1), mhsa.to_out.weight, mhsa.to_out.bias)
    _close(mhsa(x), expected)


def test_token_mhsa_dropout_only_while_training() -> None:
    mhsa = _randomise(MultiHeadSelfAttention(4, heads=2, head_dim=2, dropout=0.9))
    x = torch.randn(1, 6, 4)
    reference = MultiHeadSelfAttention(4, heads=2, head_dim=2)
    reference.load_state_dict(mhsa.state_dict())
    mhsa.eval()
    torch.testing.assert_close(mhsa(x), reference(x))
    mhsa.train()
    assert not torch.allclose(mhsa(x), reference(x))


def test_token_mhsa_refusals() -> None:
    cases = [
        ({"dim": 0}, "MultiHeadSelfAttention: dim, heads and head_dim must be >= 1, got dim=0, "
                     "heads=8, head_dim=64"),
        ({"dim": 4, "heads": 0}, "MultiHeadSelfAttention: dim, heads and head_dim must be >= 1, "
                                 "got dim=4, heads=0, head_dim=64"),
        ({"dim": 4, "head_dim": 0}, "MultiHeadSelfAttention: dim, heads and head_dim must be "
                                    ">= 1, got dim=4, heads=8, head_dim=0"),
        ({"dim": 4, "dropout": 1.0}, "MultiHeadSelfAttention: dropout must be in [0, 1), "
                                     "got 1.0"),
        ({"dim": 4, "dropout": -0.1}, "MultiHeadSelfAttention: dropout must be in [0, 1), "
                                      "got -0.1"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as info:
            MultiHeadSelfAttention(**kwargs)
        assert str(info.value) == message
    assert MultiHeadSelfAttention(1, heads=1, head_dim=1, dropout=0.0).dim == 1
    with pytest.raises(ValueError) as info:
        MultiHeadSelfAttention(4, heads=1, head_dim=2)(torch.zeros(2, 4))
    assert str(info.value) == (
        "MultiHeadSelfAttention: expected tokens of shape (B, N, 4), got (2, 4)"
    )


# --- Jetley's linear attention -------------------------------------------------------------


@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize("normalize", ["softmax", "sigmoid"])
@pytest.mark.parametrize(("local", "glob"), [(3, 3), (2, 4)])
def test_linear_attention_reference(local: int, glob: int, normalize: str, record: bool) -> None:
    est = _randomise(LinearAttentionEstimator(local, glob, normalize=normalize).double())
    est.record_gate = record
    x = _x(2, local, 3, 2)
    g = _x(2, glob, seed=3)
    tokens = x.flatten(2).transpose(1, 2)  # (B, N, local)
    if local != glob:
        assert est.projector is not None and est.projector.bias is None
        tokens = _dense(tokens, est.projector.weight, None)  # (B, N, glob)
    else:
        assert est.projector is None
    scores = _dense(tokens + g[:, None, :], est.compat.weight, None)[..., 0]  # (B, N)
    if normalize == "softmax":
        a = torch.exp(scores) / torch.exp(scores).sum(dim=1, keepdim=True)
        pooled = torch.einsum("bn,bnc->bc", a, tokens)
    else:
        a = torch.sigmoid(scores)
        pooled = torch.einsum("bn,bnc->bc", a, tokens) / tokens.shape[1]
    got_a, got_pooled = est(x, g)
    _close(got_a, a.view(2, 1, 3, 2))
    _close(got_pooled, pooled)
    got_a4, got_pooled4 = est(x, g[:, :, None, None])  # the (B, C, 1, 1) form
    _close(got_a4, got_a)
    _close(got_pooled4, got_pooled)
    if record:
        _close(est.last_gate, a.view(2, 1, 3, 2))
    else:
        assert est.last_gate is None


def test_linear_attention_defaults_and_refusals() -> None:
    est = LinearAttentionEstimator(2, 2)
    assert est.normalize == "softmax" and est.local_channels == 2 and est.global_channels == 2
    assert est.compat.bias is None and est.compat.out_channels == 1
    assert LinearAttentionEstimator(1, 1).compat.in_channels == 1
    cases = [
        ((0, 2), "LinearAttentionEstimator: local_channels and global_channels must be >= 1, "
                 "got local_channels=0, global_channels=2"),
        ((2, 0), "LinearAttentionEstimator: local_channels and global_channels must be >= 1, "
                 "got local_channels=2, global_channels=0"),
        ((2, 2, "relu"), "LinearAttentionEstimator: unknown normalize 'relu'; choose from "
                         "'softmax', 'sigmoid'"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError) as info:
            LinearAttentionEstimator(*args)
        assert str(info.value) == message
    x, g = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2)
    bad_calls = [
        ((torch.zeros(2, 2, 2), g), "expected l of shape (B, 2, H, W), got (2, 2, 2)"),
        ((torch.zeros(1, 3, 2, 2), g), "expected l of shape (B, 2, H, W), got (1, 3, 2, 2)"),
        ((x, torch.zeros(1, 3)), "expected g of shape (B, 2) or (B, 2, 1, 1), got (1, 3, 1, 1)"),
        ((x, torch.zeros(1, 2, 2, 2)), "expected g of shape (B, 2) or (B, 2, 1, 1), got "
                                       "(1, 2, 2, 2)"),
        ((x, torch.zeros(1, 2, 1)), "expected g of shape (B, 2) or (B, 2, 1, 1), got (1, 2, 1)"),
        ((x, torch.zeros(1, 2, 1, 2)), "expected g of shape (B, 2) or (B, 2, 1, 1), got "
                                       "(1, 2, 1, 2)"),
    ]
    for call, message in bad_calls:
        with pytest.raises(ValueError) as info:
            est(*call)
        assert str(info.value) == "LinearAttentionEstimator: " + message


# --- grid attention gate -------------------------------------------------------------------


def _grid_reference(gate: GridAttentionGate, x: torch.Tensor, phi_g: torch.Tensor):
    """a = sigmoid(psi(relu(theta(l) + phi(g)))), pooled = sum a l / sum a; phi_g at (H, W)."""
    tokens = x.flatten(2).transpose(1, 2)  # (B, N, C_l)
    theta = _dense(tokens, gate.theta.weight, None)  # (B, N, inter)
    joint = torch.relu(theta + phi_g)
    a = torch.sigmoid(_dense(joint, gate.psi.weight, gate.psi.bias))[..., 0]  # (B, N)
    pooled = torch.einsum("bn,bnc->bc", a, tokens) / a.sum(dim=1, keepdim=True)
    return a.view(x.shape[0], 1, *x.shape[2:]), pooled


def test_grid_gate_with_a_vector_and_a_same_size_map() -> None:
    gate = _randomise(GridAttentionGate(4, 3, inter_channels=2).double())
    with torch.no_grad():
        gate.psi.bias.fill_(-3.0)  # a sparse map: sum of a < 1, where the normaliser shows
    x = _x(2, 4, 2, 2)
    g = _x(2, 3, seed=3)
    phi = _dense(g, gate.phi.weight, gate.phi.bias)[:, None, :]  # (B, 1, inter)
    a, pooled = _grid_reference(gate, x, phi)
    assert a.detach().sum(dim=(2, 3)).max().item() < 1.0
    for g_form in (g, g[:, :, None, None]):
        got_a, got_pooled = gate(x, g_form)
        _close(got_a, a)
        _close(got_pooled, pooled)
    g_map = _x(2, 3, 2, 2, seed=4)
    phi_map = _dense(g_map.flatten(2).transpose(1, 2), gate.phi.weight, gate.phi.bias)
    a, pooled = _grid_reference(gate, x, phi_map)
    got_a, got_pooled = gate(x, g_map)
    _close(got_a, a)
    _close(got_pooled, pooled)


def test_grid_gate_resizes_a_coarse_gating_map_bilinearly() -> None:
    gate = _randomise(GridAttentionGate(2, 3, inter_channels=2).double())
    x = _x(1, 2, 4, 4)
    g = _x(1, 3, 2, 2, seed=5)
    phi = gate.phi(g)  # (1, inter, 2, 2)
    # align_corners=False: output pixel i samples input coordinate (i + 0.5) / 2 - 0.5,
    # clamped to the edge: 4 outputs from 2 inputs weigh them (1, 0), (.75, .25), (.25, .75), (0, 1).
    w = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]], dtype=D)
    up = torch.einsum("ip,jq,bcpq->bcij", w, w, phi)  # (1, inter, 4, 4)
    a, pooled = _grid_reference(gate, x, up.flatten(2).transpose(1, 2))
    got_a, got_pooled = gate(x, g)
    _close(got_a, a)
    _close(got_pooled, pooled)


def test_grid_gate_resamples_only_a_gating_grid_that_differs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A vector or a same-size map is used as it is (broadcast, exact, no B x inter x H x W
    # resampled copy); only a grid of another size goes through the bilinear resize.
    import trainables.blocks.attention_gate as module

    sizes: list[tuple[int, ...]] = []
    real = F.interpolate

    def spy(t: torch.Tensor, **kwargs: object) -> torch.Tensor:
        sizes.append(tuple(t.shape[2:]))
        return real(t, **kwargs)

    monkeypatch.setattr(module.F, "interpolate", spy)
    gate = GridAttentionGate(2, 3, inter_channels=2)
    x = torch.randn(1, 2, 3, 2)
    for g in (torch.randn(1, 3), torch.randn(1, 3, 1, 1), torch.randn(1, 3, 3, 2)):
        gate(x, g)
    assert sizes == []
    for g_shape in ((1, 3, 1, 2), (1, 3, 2, 1), (1, 3, 2, 2), (1, 3, 6, 4)):
        gate(x, torch.randn(g_shape))
    assert sizes == [(1, 2), (2, 1), (2, 2), (6, 4)]


def test_grid_gate_guards_an_all_zero_map() -> None:
    gate = GridAttentionGate(2, 2, inter_channels=1)
    with torch.no_grad():
        gate.psi.bias.fill_(-1e4)  # sigmoid underflows to exactly 0
    a, pooled = gate(torch.randn(1, 2, 2, 2), torch.randn(1, 2))
    assert torch.equal(a, torch.zeros(1, 1, 2, 2))
    assert torch.equal(pooled, torch.zeros(1, 2))


def test_grid_gate_defaults_recording_and_refusals() -> None:
    gate = GridAttentionGate(6, 5)
    assert (gate.local_channels, gate.gating_channels, gate.inter_channels) == (6, 5, 3)
    assert gate.theta.bias is None and gate.phi.bias is not None and gate.psi.bias is not None
    assert gate.theta.out_channels == 3 and gate.phi.out_channels == 3
    assert gate.psi.in_channels == 3 and gate.psi.out_channels == 1
    assert GridAttentionGate(1, 1).inter_channels == 1  # at least one
    assert GridAttentionGate(7, 1).inter_channels == 3
    assert GridAttentionGate(4, 1, inter_channels=5).theta.out_channels == 5
    x, g = torch.randn(2, 6, 3, 3), torch.randn(2, 5)
    a, _ = gate(x, g)
    assert gate.last_gate is None
    gate.record_gate = True
    gate(x, g)
    torch.testing.assert_close(gate.last_gate, a)
    cases = [
        ((0, 2, 1), "local_channels=0, gating_channels=2, inter_channels=1"),
        ((2, 0, 1), "local_channels=2, gating_channels=0, inter_channels=1"),
        ((2, 2, 0), "local_channels=2, gating_channels=2, inter_channels=0"),
    ]
    for args, values in cases:
        with pytest.raises(ValueError) as info:
            GridAttentionGate(*args)
        assert str(info.value) == (
            "GridAttentionGate: local_channels, gating_channels and inter_channels must be "
            ">= 1, got " + values
        )
    bad_calls = [
        ((torch.zeros(6, 3, 3), g), "expected l of shape (B, 6, H, W), got (6, 3, 3)"),
        ((torch.zeros(2, 5, 3, 3), g), "expected l of shape (B, 6, H, W), got (2, 5, 3, 3)"),
        ((x, torch.zeros(2, 4)), "expected g of shape (B, 5, h, w) or (B, 5), got (2, 4, 1, 1)"),
        ((x, torch.zeros(2, 5, 3)), "expected g of shape (B, 5, h, w) or (B, 5), got (2, 5, 3)"),
    ]
    for call, message in bad_calls:
        with pytest.raises(ValueError) as info:
            gate(*call)
        assert str(info.value) == "GridAttentionGate: " + message


# --- registry and residual -----------------------------------------------------------------


def test_registry_builds_each_name_as_its_class() -> None:
    expected = {"se": SqueezeExcite, "cbam": CBAM, "spatial": PointwiseSpatialGate,
                "spatial7": SpatialGate, "eca": EfficientChannelAttention,
                "selfatt": SelfAttention2d, "mhsa": MultiHeadSelfAttention2d}
    assert list_attn() == sorted(expected)
    for name, cls in expected.items():
        block = create_attn(name, 16)
        assert type(block) is cls and block.channels == 16
    assert create_attn("spatial7", 16).conv.kernel_size == (7, 7)
    assert create_attn("spatial7", 16, kernel_size=3).conv.kernel_size == (3, 3)
    with pytest.raises(ValueError) as info:
        create_attn("SE", 16)
    assert str(info.value) == (
        "Unknown attention block 'SE'; choose from 'none', 'cbam', 'eca', 'mhsa', 'se', "
        "'selfatt', 'spatial', 'spatial7'"
    )


def test_register_attn_adds_a_buildable_block() -> None:
    from trainables.blocks import registry

    def factory(channels: int, **kwargs: object) -> nn.Module:
        return nn.Conv2d(channels, channels, 1, **kwargs)

    try:
        assert registry.register_attn("test-only-conv")(factory) is factory
        assert "test-only-conv" in list_attn()
        block = create_attn("test-only-conv", 3, bias=False)
        assert isinstance(block, nn.Conv2d) and block.in_channels == 3 and block.bias is None
    finally:
        registry._ATTN_REGISTRY.pop("test-only-conv", None)
    assert "test-only-conv" not in list_attn()


def test_residual_wrapper_math_and_repr() -> None:
    block = _randomise(SelfAttention2d(3).double())
    x = _x(1, 3, 2, 2)
    fx = block(x)
    assert repr(AttentionResidual(block, "none")).startswith("AttentionResidual(\n  mode='none'\n")
    assert "mode='weighted'" in repr(AttentionResidual(block, "weighted"))
    _close(AttentionResidual(block)(x), x + fx)  # "plain" is the default
    weighted = AttentionResidual(block, "weighted").double()
    assert weighted.gamma.shape == (1,) and weighted.gamma.item() == 0.0
    with torch.no_grad():
        weighted.gamma.fill_(-2.0)
    _close(weighted(x), x - 2.0 * fx)
    wrapped = wrap_attention("spatial", 4)
    assert isinstance(wrapped, AttentionResidual) and wrapped.mode == "plain"
    assert type(wrapped.block) is PointwiseSpatialGate
    with pytest.raises(ValueError) as info:
        wrap_attention("se", 16, residual="gated")
    assert str(info.value) == (
        "Unknown residual mode 'gated'; choose from 'none', 'plain', 'weighted'"
    )
    with pytest.raises(ValueError, match="Unknown attention block 'nope'"):
        wrap_attention("nope", 16)


def test_cbam_output_differs_from_its_parts_alone() -> None:
    # Both gates act: dropping either one changes the output.
    cbam = _randomise(CBAM(8, rd_ratio=1 / 4).double())
    x = _x(1, 8, 4, 4)
    out = cbam(x)
    assert not torch.allclose(out, cbam.channel(x))
    assert not torch.allclose(out, cbam.spatial(x))
    assert torch.isfinite(out).all()
