"""Batched data augmentation on the training device: crop with padding, flips, Gaussian noise
and SpecAugment-style frequency/time masks.

Why whole batches on the device rather than torchvision transforms per sample: on 32x32
inputs per-sample Python (a transform call per image, then collation) costs more than the
model's forward pass (airbench's observation); one pad, one gather and one flip-by-index per
batch cost a few kernel launches whatever the batch size.

Random numbers come from a CPU ``torch.Generator`` owned by the trial, so the crops are the
same on CPU and GPU and a trial resumed with its generator state reproduces them; they move
to the device in one transfer per batch, from pinned memory and without waiting
(`to_device_async`), so no step makes the host wait for the device. Nothing else crosses:
fill values are written by ``fill_`` with Python numbers, never built as a host tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import torch

from trainables.data.batches import to_device_async


def fill_for(mean: Sequence[float], std: Sequence[float]) -> tuple[float, ...]:
    """The normalised value of a black pixel per channel: pad with it to pad like torchvision,
    which pads the raw image with zeros before normalising."""
    return tuple((0.0 - m) / s for m, s in zip(mean, std, strict=True))


class RandomCropFlip:
    """Pad by ``padding``, crop back to the input size at a random offset per image, and
    mirror each image left-right with probability 1/2 (``flip``).

    Works on a float (B, C, H, W) batch on any device; ``fill`` is one value, or one per
    channel (see ``fill_for``). ``padding=0`` skips the crop, ``flip=False`` the flip.
    """

    def __init__(
        self,
        *,
        padding: int = 4,
        flip: bool = True,
        fill: tuple[float, ...] | float = 0.0,
        generator: torch.Generator,
    ) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, not {padding}")
        self.padding = padding
        self.flip = flip
        self.fill = fill
        self.generator = generator

    def _draw(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 2) crop offsets and (B,) flip flags, drawn on the CPU and moved in one copy
        that does not wait for the device."""
        offsets = (torch.randint(0, 2 * self.padding + 1, (batch, 2), generator=self.generator)
                   if self.padding else torch.zeros(batch, 2, dtype=torch.int64))
        flips = (torch.rand(batch, generator=self.generator) < 0.5 if self.flip
                 else torch.zeros(batch, dtype=torch.bool))
        packed = to_device_async(torch.cat([offsets, flips.long()[:, None]], dim=1), device)
        return packed[:, :2], packed[:, 2].bool()

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.padding
        fill = (self.fill,) if isinstance(self.fill, Real) else tuple(self.fill)
        if len(fill) not in (1, c):
            raise ValueError(f"fill has {len(fill)} values for {c} channels")
        # fill_ takes the value as a kernel argument; a tensor made from the Python values
        # would be a blocking host-to-device copy every step.
        padded = x.new_empty(b, c, h + 2 * p, w + 2 * p)
        if len(set(fill)) == 1:
            padded.fill_(fill[0])
        else:
            for channel, value in enumerate(fill):
                padded[:, channel].fill_(value)
        padded[:, :, p : p + h, p : p + w] = x
        return padded

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        if not self.padding and not self.flip:
            return x
        b, c, h, w = x.shape
        offsets, flips = self._draw(b, x.device)
        source = self._pad(x) if self.padding else x
        rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (B, H)
        cols = torch.arange(w, device=x.device).expand(b, w)
        cols = torch.where(flips[:, None], (w - 1) - cols, cols) + offsets[:, 1:]  # (B, W)
        # One gather does crop and flip: out[i, ch, r, q] = source[i, ch, rows[i, r], cols[i, q]].
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        channel = torch.arange(c, device=x.device)[None, :, None, None]
        return source[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def _device_generator(source: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from the trial's CPU generator.

    Big random tensors (noise the size of the batch) are drawn where they are used; seeding
    from the trial's generator keeps a resumed trial's noise identical to the original's.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=source))
    return torch.Generator(device=device).manual_seed(seed)


class GaussianNoise:
    """Add N(0, ``std``) noise to every input value (the FSDD study: 0.02 on [0, 1] images)."""

    def __init__(self, std: float, *, generator: torch.Generator) -> None:
        if std < 0:
            raise ValueError(f"noise std must be >= 0, not {std}")
        self.std = std
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return x
        noise = torch.randn(x.shape, generator=_device_generator(self.generator, x.device),
                            device=x.device, dtype=x.dtype)
        return x + self.std * noise


class SpectrogramMask:
    """SpecAugment's frequency and time masking (Park et al. 2019), per example, batched.

    Each example gets ``count`` bands of rows (frequency; width uniform in
    [0, ``freq_width``]) and ``count`` bands of columns (time; [0, ``time_width``]) set to
    ``fill`` (silence: 0 on the [0, 1] image scale). Unlike torchaudio's masking
    transforms, the draws come from the trial's generator, so resume is exact.
    """

    def __init__(self, *, freq_width: int = 0, time_width: int = 0, count: int = 1,
                 fill: float = 0.0, generator: torch.Generator) -> None:
        if freq_width < 0 or time_width < 0 or count < 1:
            raise ValueError(f"mask widths must be >= 0 and count >= 1; got freq_width="
                             f"{freq_width}, time_width={time_width}, count={count}")
        self.freq_width = freq_width
        self.time_width = time_width
        self.count = count
        self.fill = fill
        self.generator = generator

    def _bands(self, batch: int, size: int, width: int, device: torch.device) -> torch.Tensor:
        """(B, size) bool: True inside any of ``count`` random bands of width <= ``width``."""
        widths = torch.randint(0, min(width, size) + 1, (batch, self.count),
                               generator=self.generator)
        starts = (torch.rand(batch, self.count, generator=self.generator)
                  * (size - widths + 1)).long()
        bounds = to_device_async(torch.stack([starts, starts + widths]), device)  # (2, B, count)
        position = torch.arange(size, device=device)[None, None, :]
        inside = (position >= bounds[0][..., None]) & (position < bounds[1][..., None])
        return inside.any(dim=1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        masked = torch.zeros(b, h, w, dtype=torch.bool, device=x.device)
        if self.freq_width:
            masked |= self._bands(b, h, self.freq_width, x.device)[:, :, None]
        if self.time_width:
            masked |= self._bands(b, w, self.time_width, x.device)[:, None, :]
        return x.masked_fill(masked[:, None], self.fill)


class Compose:
    """Apply batch augmentations in order."""

    def __init__(self, steps: Sequence) -> None:
        self.steps = list(steps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x
