"""Shared knobs of the gating blocks: timm's channel rounding and a gate-recording switch.

Why a guard timm lacks: timm inflates a sub-channel hidden width (say 16 channels at ratio
1/32) to `rd_divisor` without a word. CNNtention (arXiv:2412.11657) sweeps CBAM's reduction
up to 32 on 16-channel stages, where that silent inflation would make "r=32" mean something
else, so a ratio that asks for less than one hidden channel is an error here, and so is a
ratio above 1 (an "r=16" passed as `rd_ratio=16` would build a 16x wider MLP). Rounding to
a multiple of `rd_divisor` is the caller's explicit choice: CBAM defaults to 1 (the paper's
C/r), SE to timm's 8.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LayerFactory = Callable[[], nn.Module]
"""A module class or factory called with no arguments, e.g. `nn.ReLU` or `nn.Sigmoid`."""


def make_divisible(
    v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """Round `v` to the nearest multiple of `divisor` (at least `min_value`, default `divisor`).

    Identical to timm's `make_divisible`: if rounding down loses more than 10% of `v`, go up
    one step instead.
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def reduced_channels(
    channels: int,
    rd_ratio: float,
    rd_channels: int | None,
    rd_divisor: int,
    *,
    owner: str,
) -> int:
    """Hidden width of a squeeze MLP: `rd_channels` if given, else timm's rounded ratio.

    Raises a one-line ValueError naming the key and its valid range when the ratio asks for
    less than one hidden channel or more than `channels` (see module docstring), or when
    any other knob is out of range; `owner` names the block in the message.
    """
    if channels < 1:
        raise ValueError(f"{owner}: channels must be >= 1, got {channels}")
    if rd_channels is not None:
        if rd_channels < 1:
            raise ValueError(f"{owner}: rd_channels must be >= 1, got {rd_channels}")
        return rd_channels
    if rd_divisor < 1:
        raise ValueError(f"{owner}: rd_divisor must be >= 1, got {rd_divisor}")
    if not 0 < rd_ratio <= 1:
        raise ValueError(
            f"{owner}: rd_ratio must be in (0, 1] (1/r for a reduction r >= 1, e.g. 1/16), "
            f"got {rd_ratio:g}"
        )
    raw = channels * rd_ratio
    if raw < 1:
        raise ValueError(
            f"{owner}: channels={channels} with rd_ratio={rd_ratio:g} (reduction "
            f"{1 / rd_ratio:g}) gives a hidden width of {raw:g}, under one channel; "
            f"rd_ratio must be in [{1 / channels:g}, 1] (a reduction <= {channels}) here, "
            f"or pass rd_channels explicitly"
        )
    return make_divisible(raw, rd_divisor)


class RecordsMap(nn.Module):
    """Base of every block that can keep its latest attention map for rendering.

    With `record_gate` True (default False) the latest map is kept, detached, in
    `last_gate`; off, nothing is kept alive between steps. Gates keep the gate itself;
    blocks with an attention matrix keep a (B, 1, H, W) map of where attention went.
    """

    record_gate: bool
    last_gate: torch.Tensor | None

    def __init__(self) -> None:
        super().__init__()
        self.record_gate = False
        self.last_gate = None

    def _record(self, gate: torch.Tensor) -> None:
        if self.record_gate:
            self.last_gate = gate.detach()


class GateModule(RecordsMap):
    """Base of the gating blocks: `forward(x) = x * compute_gate(x)`."""

    def compute_gate(self, x: torch.Tensor) -> torch.Tensor:
        """The gate for `x`, broadcastable against it; subclasses implement this."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.compute_gate(x)
        self._record(gate)
        return x * gate


def set_record_gate(module: nn.Module, enabled: bool = True) -> int:
    """Switch `record_gate` on every map-recording block inside `module`; returns how many.

    Switching off also drops the kept gates, so they stop holding memory.
    """
    count = 0
    for sub in module.modules():
        if isinstance(sub, RecordsMap):
            sub.record_gate = enabled
            if not enabled:
                sub.last_gate = None
            count += 1
    return count
