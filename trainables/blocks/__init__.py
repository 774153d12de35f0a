"""Attention blocks: map gates that return `x * gate`, and token self-attention."""

from trainables.blocks.cbam import CBAM, ChannelGate, SpatialGate
from trainables.blocks.helpers import GateModule, RecordsMap, make_divisible, set_record_gate
from trainables.blocks.registry import create_attn, list_attn, register_attn
from trainables.blocks.spatial import PointwiseSpatialGate
from trainables.blocks.squeeze_excite import SqueezeExcite
from trainables.blocks.token_attention import MultiHeadSelfAttention

__all__ = [
    "CBAM",
    "ChannelGate",
    "GateModule",
    "MultiHeadSelfAttention",
    "PointwiseSpatialGate",
    "RecordsMap",
    "SpatialGate",
    "SqueezeExcite",
    "create_attn",
    "list_attn",
    "make_divisible",
    "register_attn",
    "set_record_gate",
]
