"""The HMDB51 network of "Video processing with 3DCNN and Attention mechanism" (GitHub,
vuthanhtung2412/3DCNN-Attention-mechanism): truncated R(2+1)D-18 tokens read by a Perceiver
(Jaegle et al. 2021).

Layout (perceiver-pytorch's conventions, which the study followed):

1. CNN: `truncated_r2plus1d(cnn_blocks)` -> (B, C, T', H', W') -> tokens (B, T'H'W', C).
2. Fourier position features (`FourierPositionFeatures`): per axis (T', H', W'), positions
   linspace(-1, 1) give sin(pi x f) and cos(pi x f) for f in linspace(1, max_freq / 2,
   bands), plus x itself: 2 * 6 + 1 = 13 per axis, 39 channels concatenated to each token.
   They are built for the actual grid at run time, so any clip size works.
3. `cross_blocks` groups of [cross-attention block, then `self_per_cross` self-attention
   blocks]. The cross block's queries are the current latent stream (256 learned latents of
   width 512 at the start; later groups read the stream they are handed, with their own
   weights), keys and values the same token context every time.
4. Pooling: "cls" (a learned CLS token joins the stream before the first self-attention
   block; its final state is read) or "mean" (over the stream). "auto" picks "cls" when self
   blocks follow a cross block, else "mean". Then LayerNorm -> Dropout -> Linear.

`cross_blocks=0` is the self-only variant: `self_per_cross` self-attention blocks straight over
the CNN tokens (no latents, no Fourier features, width = CNN channels).

Blocks (pre-norm, residual, as perceiver-pytorch): cross = LayerNorm on latents and on context,
1 head of 64, q from latents and k, v from context without bias, Linear(64 -> 512) with bias;
then the GEGLU feed-forward LayerNorm -> Linear(512 -> 2 * 4 * 512) -> a * gelu(gate) ->
Linear(2048 -> 512). Self = the same attention with context = stream, 8 heads of 64, and the
same feed-forward. One `PerceiverAttention` class serves both (why not
`blocks.token_attention.MultiHeadSelfAttention`: it has one bias switch for q, k, v and out,
while this layout has bias on the output only, and it cannot attend to a separate context).

Every module is built in __init__: the source study created its attention modules lazily
inside forward(), after the optimizer had been built, so they never trained.

`dropout` acts on the attention weights, the feed-forward's hidden layer and the classifier
input. Latents are N(0, 1) (perceiver-pytorch); the CLS token N(0, 0.02^2) (ViT/timm style).

Parameter counts, measured (defaults, 8 CNN blocks: context width 512 + 39 = 551; the source's
figures in brackets):

- cross block incl. the 256 x 512 latents: 3,421,134 [3.4M] (latents 131,072; LayerNorms on
  latents 1,024 and context 1,102; q 32,768; k, v 70,528; out 33,280; feed-forward incl. its
  LayerNorm 3,151,360).
- self block: 4,201,472 [4.2M] (LayerNorm 1,024; q, k, v 786,432; out 262,656; feed-forward
  incl. its LayerNorm 3,151,360).
- attention part (`.attention`: latents, blocks, CLS, final LayerNorm; classifier excluded):
  1C+1S 7,624,142 [7.6M]; 1C+2S 11,825,614 [11.8M]; 1C+6S 28,631,502 [28.6M];
  2(1C+6S) 57,130,396 [57.2M: the second cross block reuses the latent stream, so no second
  latent array]; cross-only 3,422,158; self-only (1 block) 4,202,496.
- classifier Linear(512, 51): 26,163. CNN: see `r2plus1d` (31,300,125 for 8 blocks).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models.registry import register_model
from trainables.models.video.r2plus1d import (
    R2Plus1DClassifier,
    _check_cnn_blocks,
    cnn_out_channels,
    count_parameters,
    truncated_r2plus1d,
)
from trainables.models.video.weights import ensure_weights

POOL_CHOICES: tuple[str, ...] = ("auto", "cls", "mean")
_CACHE_LIMIT = 8


def fourier_encode(x: torch.Tensor, max_freq: float, bands: int) -> torch.Tensor:
    """perceiver-pytorch's `fourier_encode`: (...,) -> (..., 2 * bands + 1).

    [sin(pi x f_1..f_bands), cos(pi x f_1..f_bands), x] with f = linspace(1, max_freq / 2, bands).
    """
    x = x.unsqueeze(-1)
    freqs = torch.linspace(1.0, max_freq / 2, bands, device=x.device, dtype=x.dtype)
    scaled = x * freqs * math.pi
    return torch.cat([scaled.sin(), scaled.cos(), x], dim=-1)


class FourierPositionFeatures(nn.Module):
    """Fourier features of each token's grid position, (N, axes * (2 * bands + 1)) for a grid.

    Tokens are ordered as `grid` flattened row-major (T', then H', then W'), and each axis'
    13 features are grouped together (axis 0's, then axis 1's, ...), perceiver-pytorch's
    '... n d -> ... (n d)'. No parameters; results are cached per (grid, device, dtype).
    """

    def __init__(self, axes: int = 3, bands: int = 6, max_freq: float = 10.0) -> None:
        super().__init__()
        if axes < 1 or bands < 1:
            raise ValueError(f"FourierPositionFeatures: axes and bands must be >= 1, got "
                             f"axes={axes}, bands={bands}")
        if not max_freq > 0:
            raise ValueError(f"FourierPositionFeatures: max_freq must be > 0, got {max_freq}")
        self.axes = axes
        self.bands = bands
        self.max_freq = float(max_freq)
        self.out_channels = axes * (2 * bands + 1)
        self._cache: dict[tuple[object, ...], torch.Tensor] = {}

    def forward(
        self, grid: tuple[int, ...], device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        if len(grid) != self.axes:
            raise ValueError(f"FourierPositionFeatures: expected a {self.axes}-axis grid, "
                             f"got {tuple(grid)}")
        key = (tuple(grid), device, dtype)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        axis_pos = [torch.linspace(-1.0, 1.0, n, device=device) for n in grid]
        pos = torch.stack(torch.meshgrid(*axis_pos, indexing="ij"), dim=-1)  # (*grid, axes)
        enc = fourier_encode(pos, self.max_freq, self.bands)  # (*grid, axes, 2 * bands + 1)
        enc = enc.reshape(-1, self.out_channels).to(dtype)  # (N, out_channels)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = enc
        return enc


class GEGLU(nn.Module):
    """GLU with a GELU gate (Shazeer 2020): split the last axis in halves a, g -> a * gelu(g)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = x.chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Sequential):
    """Pre-norm GEGLU feed-forward: LayerNorm -> Linear(dim, 2 * mult * dim) -> GEGLU ->
    Dropout -> Linear(mult * dim, dim). The residual is added by the caller."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        hidden = dim * mult
        super().__init__(
            OrderedDict(
                norm=nn.LayerNorm(dim),
                fc1=nn.Linear(dim, 2 * hidden),
                act=GEGLU(),
                drop=nn.Dropout(dropout),
                fc2=nn.Linear(hidden, dim),
            )
        )


class PerceiverAttention(nn.Module):
    """Multi-head attention from (B, N, query_dim) queries to a (B, M, context_dim) context.

    perceiver-pytorch's layout: q = Linear(query_dim -> heads * head_dim, no bias), k and v
    from one Linear(context_dim -> 2 * heads * head_dim, no bias), softmax(q k^T / sqrt(d)) v
    per head (`F.scaled_dot_product_attention`), output Linear(heads * head_dim -> query_dim)
    with bias. Without a context it is self-attention. No norm, no residual: the blocks add them.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        head_dim: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        context_dim = query_dim if context_dim is None else context_dim
        if min(query_dim, context_dim, heads, head_dim) < 1:
            raise ValueError(
                f"PerceiverAttention: query_dim, context_dim, heads and head_dim must be >= 1, "
                f"got {query_dim}, {context_dim}, {heads}, {head_dim}"
            )
        self.heads = heads
        self.head_dim = head_dim
        self.dropout = dropout
        inner = heads * head_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # (B, h, N, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q = self._split_heads(self.to_q(x))  # (B, h, N, d)
        k, v = (self._split_heads(t) for t in self.to_kv(context).chunk(2, dim=-1))  # (B,h,M,d)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )  # (B, h, N, d)
        return self.to_out(out.transpose(1, 2).flatten(2))  # (B, N, query_dim)


class CrossAttentionBlock(nn.Module):
    """latents + Attn(LN(latents), LN(context)); then + FeedForward. Context is not updated."""

    def __init__(
        self,
        dim: int,
        context_dim: int,
        heads: int = 1,
        head_dim: int = 64,
        ff_mult: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.attn = PerceiverAttention(dim, context_dim, heads, head_dim, dropout)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(self, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        latents = latents + self.attn(self.norm(latents), self.norm_context(context))
        return latents + self.ff(latents)


class SelfAttentionBlock(nn.Module):
    """x + Attn(LN(x)); then + FeedForward (pre-norm transformer block)."""

    def __init__(
        self, dim: int, heads: int = 8, head_dim: int = 64, ff_mult: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = PerceiverAttention(dim, None, heads, head_dim, dropout)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm(x))
        return x + self.ff(x)


class PerceiverEncoder(nn.Module):
    """The attention part: (B, N, C) tokens on a (T', H', W') grid -> pooled (B, width).

    `blocks` runs in order ([cross, self x self_per_cross] x cross_blocks, or the self blocks
    alone when cross_blocks=0); `latents`, `cls_token` and `fourier` are None where unused;
    `norm` is the final LayerNorm. See the module docstring for the layout.
    """

    def __init__(
        self,
        *,
        token_dim: int,
        cross_blocks: int = 1,
        self_per_cross: int = 1,
        num_latents: int = 256,
        latent_dim: int = 512,
        cross_heads: int = 1,
        cross_head_dim: int = 64,
        self_heads: int = 8,
        self_head_dim: int = 64,
        ff_mult: int = 4,
        fourier_bands: int = 6,
        max_freq: float = 10.0,
        pool: str = "auto",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        who = "r2plus1d_perceiver"
        if cross_blocks < 0 or self_per_cross < 0:
            raise ValueError(f"{who}: cross_blocks and self_per_cross must be >= 0, got "
                             f"{cross_blocks} and {self_per_cross}")
        if cross_blocks == 0 and self_per_cross == 0:
            raise ValueError(f"{who}: no attention blocks (cross_blocks=0, self_per_cross=0); "
                             f"use the 'r2plus1d' model for the CNN-only baseline")
        for name, value in (("num_latents", num_latents), ("latent_dim", latent_dim),
                            ("cross_heads", cross_heads), ("cross_head_dim", cross_head_dim),
                            ("self_heads", self_heads), ("self_head_dim", self_head_dim),
                            ("ff_mult", ff_mult), ("fourier_bands", fourier_bands)):
            if value < 1:
                raise ValueError(f"{who}: {name} must be >= 1, got {value}")
        if pool not in POOL_CHOICES:
            valid = ", ".join(repr(p) for p in POOL_CHOICES)
            raise ValueError(f"{who}: unknown pool {pool!r}; choose from {valid}")
        if pool == "auto":
            pool = "cls" if cross_blocks > 0 and self_per_cross > 0 else "mean"
        if pool == "cls" and self_per_cross == 0:
            raise ValueError(f"{who}: pool='cls' needs self-attention blocks to read the CLS "
                             f"token (self_per_cross >= 1); use pool='mean'")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{who}: dropout must be in [0, 1), got {dropout}")

        self.pool = pool
        blocks: list[nn.Module] = []
        if cross_blocks == 0:  # self-only: attend over the CNN tokens themselves
            self.width = token_dim
            self.fourier = None
            self.latents = None
            blocks = [SelfAttentionBlock(token_dim, self_heads, self_head_dim, ff_mult, dropout)
                      for _ in range(self_per_cross)]
        else:
            self.width = latent_dim
            self.fourier = FourierPositionFeatures(3, fourier_bands, max_freq)
            context_dim = token_dim + self.fourier.out_channels
            self.latents = nn.Parameter(torch.randn(num_latents, latent_dim))
            for _ in range(cross_blocks):
                blocks.append(CrossAttentionBlock(latent_dim, context_dim, cross_heads,
                                                  cross_head_dim, ff_mult, dropout))
                blocks.extend(
                    SelfAttentionBlock(latent_dim, self_heads, self_head_dim, ff_mult, dropout)
                    for _ in range(self_per_cross)
                )
        self.blocks = nn.ModuleList(blocks)
        self.cls_token = (
            nn.Parameter(torch.randn(self.width) * 0.02) if pool == "cls" else None
        )
        self.norm = nn.LayerNorm(self.width)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        b = tokens.shape[0]
        if self.fourier is None:
            context, x = None, tokens
        else:
            pos = self.fourier(grid, tokens.device, tokens.dtype)  # (N, 39)
            context = torch.cat([tokens, pos.expand(b, -1, -1)], dim=-1)  # (B, N, C + 39)
            x = self.latents.expand(b, -1, -1)  # (B, L, width)
        cls_added = self.cls_token is None
        for block in self.blocks:
            if isinstance(block, CrossAttentionBlock):
                x = block(x, context)
                continue
            if not cls_added:  # the CLS token joins just before the first self block
                x = torch.cat([self.cls_token.to(x.dtype).expand(b, 1, -1), x], dim=1)
                cls_added = True
            x = block(x)
        pooled = x[:, 0] if self.pool == "cls" else x.mean(dim=1)  # (B, width)
        return self.norm(pooled)


class R2Plus1DPerceiver(nn.Module):
    """The HMDB51 study's network: `cnn` (truncated R(2+1)D-18) -> `attention` (PerceiverEncoder) ->
    `head` (Dropout + Linear). Input (B, 3, T, H, W) normalised clips; output logits."""

    def __init__(
        self,
        *,
        num_classes: int = 51,
        cnn_blocks: int = 8,
        cross_blocks: int = 1,
        self_per_cross: int = 1,
        num_latents: int = 256,
        latent_dim: int = 512,
        cross_heads: int = 1,
        cross_head_dim: int = 64,
        self_heads: int = 8,
        self_head_dim: int = 64,
        ff_mult: int = 4,
        fourier_bands: int = 6,
        max_freq: float = 10.0,
        pool: str = "auto",
        dropout: float = 0.0,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        _check_cnn_blocks(cnn_blocks, "r2plus1d_perceiver")
        if num_classes < 1:
            raise ValueError(f"r2plus1d_perceiver: num_classes must be >= 1, got {num_classes}")
        # Validate the attention settings before building (and maybe loading) the CNN.
        attention = PerceiverEncoder(
            token_dim=cnn_out_channels(cnn_blocks),
            cross_blocks=cross_blocks,
            self_per_cross=self_per_cross,
            num_latents=num_latents,
            latent_dim=latent_dim,
            cross_heads=cross_heads,
            cross_head_dim=cross_head_dim,
            self_heads=self_heads,
            self_head_dim=self_head_dim,
            ff_mult=ff_mult,
            fourier_bands=fourier_bands,
            max_freq=max_freq,
            pool=pool,
            dropout=dropout,
        )
        self.cnn_blocks = cnn_blocks
        self.cnn = truncated_r2plus1d(cnn_blocks, pretrained=pretrained)
        self.attention = attention
        self.head = nn.Sequential(
            OrderedDict(drop=nn.Dropout(dropout), fc=nn.Linear(attention.width, num_classes))
        )

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part: {"cnn", "attention", "head"} (works on the meta device)."""
        return {name: count_parameters(getattr(self, name))
                for name in ("cnn", "attention", "head")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.cnn(x)  # (B, C, T', H', W'), maybe channels_last_3d
        b, c, t, h, w = feats.shape
        tokens = feats.permute(0, 2, 3, 4, 1).reshape(b, t * h * w, c)  # (B, N, C)
        pooled = self.attention(tokens, (t, h, w))  # (B, width)
        return self.head(pooled)  # (B, num_classes)


@register_model("r2plus1d_perceiver")
def r2plus1d_perceiver(
    *,
    num_classes: int = 51,
    cnn_blocks: int = 8,
    cross_blocks: int = 1,
    self_per_cross: int = 1,
    num_latents: int = 256,
    latent_dim: int = 512,
    cross_heads: int = 1,
    cross_head_dim: int = 64,
    self_heads: int = 8,
    self_head_dim: int = 64,
    ff_mult: int = 4,
    fourier_bands: int = 6,
    max_freq: float = 10.0,
    pool: str = "auto",
    dropout: float = 0.0,
    pretrained: bool = False,
    weights_root: str | None = None,
) -> R2Plus1DPerceiver | R2Plus1DClassifier:
    """The HMDB51 study's truncated R(2+1)D-18 + Perceiver; see `trainables.models.video.perceiver`.

    ``cross_blocks=0, self_per_cross=0`` (no attention at all) is the study's baseline row:
    the plain CNN with its own average-pool + linear head (`r2plus1d`). One builder for all
    ten rows lets an ablation grid vary only the depth keys.

    cnn_blocks: 4, 6, 7 or 8 basic blocks kept; cross_blocks: groups of one cross-attention
    block followed by `self_per_cross` self-attention blocks (0 = self-only over the CNN
    tokens); pool: "auto", "cls" or "mean"; dropout: attention weights, feed-forward hidden
    layer and classifier input; pretrained: Kinetics-400 CNN weights from the torch hub cache;
    weights_root: a bucket URI or folder whose .pth files are copied there first (once per
    node; `--weights-root`). Study variants: cross-only (1, 0), 1C+1S (1, 1), 1C+6S (1, 6), 2 x (1C+6S) (2, 6),
    self-only (0, n).
    """
    if pretrained:
        ensure_weights("r2plus1d_18", weights_root)
    if cross_blocks == 0 and self_per_cross == 0:
        return R2Plus1DClassifier(num_classes=num_classes, cnn_blocks=cnn_blocks,
                                  dropout=dropout, pretrained=pretrained)
    return R2Plus1DPerceiver(
        num_classes=num_classes,
        cnn_blocks=cnn_blocks,
        cross_blocks=cross_blocks,
        self_per_cross=self_per_cross,
        num_latents=num_latents,
        latent_dim=latent_dim,
        cross_heads=cross_heads,
        cross_head_dim=cross_head_dim,
        self_heads=self_heads,
        self_head_dim=self_head_dim,
        ff_mult=ff_mult,
        fourier_bands=fourier_bands,
        max_freq=max_freq,
        pool=pool,
        dropout=dropout,
        pretrained=pretrained,
    )
