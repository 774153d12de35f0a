"""Attention blocks: map gates that return `x * gate`, map self-attention that returns F(x),
the residual wrapper that joins either to a backbone, token self-attention, and the
two-input estimators (Jetley's linear attention, the grid attention gate) that score a local
map against a global feature."""

from trainables.blocks.attention_gate import GridAttentionGate
from trainables.blocks.cbam import CBAM, ChannelGate, SpatialGate
from trainables.blocks.eca import EfficientChannelAttention, eca_kernel_size
from trainables.blocks.helpers import GateModule, RecordsMap, make_divisible, set_record_gate
from trainables.blocks.layer_norm import LayerNorm2d
from trainables.blocks.linear_attention import LinearAttentionEstimator
from trainables.blocks.mhsa2d import MultiHeadSelfAttention2d
from trainables.blocks.registry import create_attn, list_attn, register_attn
from trainables.blocks.residual import RESIDUAL_MODES, AttentionResidual, wrap_attention
from trainables.blocks.self_attention import SelfAttention2d
from trainables.blocks.spatial import PointwiseSpatialGate
from trainables.blocks.squeeze_excite import SqueezeExcite
from trainables.blocks.token_attention import MultiHeadSelfAttention

__all__ = [
    "CBAM",
    "RESIDUAL_MODES",
    "AttentionResidual",
    "ChannelGate",
    "EfficientChannelAttention",
    "GateModule",
    "GridAttentionGate",
    "LayerNorm2d",
    "LinearAttentionEstimator",
    "MultiHeadSelfAttention",
    "MultiHeadSelfAttention2d",
    "PointwiseSpatialGate",
    "RecordsMap",
    "SelfAttention2d",
    "SpatialGate",
    "SqueezeExcite",
    "create_attn",
    "eca_kernel_size",
    "list_attn",
    "make_divisible",
    "register_attn",
    "set_record_gate",
    "wrap_attention",
]
