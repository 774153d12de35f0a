"""Waveform -> spectrogram image: log-mel or linear STFT, scaled to uint8, a fixed size.

Why images: Part B of "Impact of Attention Mechanisms in Deep Learning" trained LeNet-style
CNNs on 128x128 spectrogram *pictures*, rescaled by 1/255. Producing the same kind of array
(uint8, low frequencies at the bottom row, loudest bin 255, ``top_db`` below it 0) lets the
spectrogram study reuse the image path unchanged: the same device-resident splits, the same
loop, the same galleries.

Time axis: with ``duration_s`` None each clip's own spectrogram is stretched to ``width``
frames, as resizing a plotted spectrogram does (the source's pipeline); a number pads or
centre-crops every clip to that duration first, which keeps absolute time (a long "seven"
stays wider than a short "one") at the price of cropping the rare long recording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SpectrogramSpec:
    """Everything a feature depends on; part of the feature cache's key."""

    kind: Literal["mel", "stft"] = "mel"
    sample_rate: int = 8000
    n_fft: int = 512
    win_length: int = 200            # 25 ms at 8 kHz; zero-padded to n_fft
    hop_length: int | None = None    # None: about `width` frames per clip
    height: int = 128                # frequency bins (mel bands for "mel")
    width: int = 128                 # time frames
    duration_s: float | None = None  # None: stretch each clip; else pad/crop to this
    top_db: float = 80.0             # dynamic range mapped onto 0..255

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"spectrogram height and width must be >= 8; got "
                             f"{self.height}x{self.width}")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length={self.win_length} must not exceed n_fft={self.n_fft}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError(f"duration_s={self.duration_s} must be positive (or None)")
        if self.top_db <= 0:
            raise ValueError(f"top_db={self.top_db} must be positive")


class SpectrogramMaker:
    """Callable turning one mono waveform (float tensor) into a (height, width) uint8 image."""

    def __init__(self, spec: SpectrogramSpec) -> None:
        import torchaudio.transforms as T

        self.spec = spec
        self._window = torch.hann_window(spec.win_length)
        self._mel = None
        if spec.kind == "mel":
            self._mel = T.MelScale(n_mels=spec.height, sample_rate=spec.sample_rate,
                                   f_min=0.0, f_max=spec.sample_rate / 2,
                                   n_stft=spec.n_fft // 2 + 1)

    def fit_length(self, wave: torch.Tensor) -> torch.Tensor:
        """Pad or centre-crop to ``duration_s`` (when set); pad very short clips to one window."""
        spec = self.spec
        target = None if spec.duration_s is None else round(spec.duration_s * spec.sample_rate)
        if target is not None and len(wave) > target:
            start = (len(wave) - target) // 2
            wave = wave[start : start + target]
        need = max(target or 0, spec.n_fft)
        if len(wave) < need:
            left = (need - len(wave)) // 2
            wave = F.pad(wave, (left, need - len(wave) - left))
        return wave

    def power(self, wave: torch.Tensor) -> torch.Tensor:
        """(freq, frames) power spectrogram, mel-scaled for kind "mel"."""
        spec = self.spec
        hop = spec.hop_length or max(1, len(wave) // spec.width)
        stft = torch.stft(wave, n_fft=spec.n_fft, hop_length=hop, win_length=spec.win_length,
                          window=self._window, center=True, return_complex=True)
        power = stft.abs().pow(2)
        return self._mel(power) if self._mel is not None else power

    def __call__(self, wave: torch.Tensor) -> np.ndarray:
        spec = self.spec
        power = self.power(self.fit_length(wave.float()))
        db = 10.0 * torch.log10(power.clamp_min(1e-10))
        # Per-clip reference: the loudest bin is 255, anything top_db below is 0, so a quiet
        # speaker's image looks like a loud one's (the plotted images did the same).
        scaled = ((db - db.max() + spec.top_db) / spec.top_db).clamp(0.0, 1.0)
        image = F.interpolate(scaled[None, None], size=(spec.height, spec.width),
                              mode="bilinear", align_corners=False)[0, 0]
        image = image.flip(0)  # low frequencies at the bottom, as a spectrogram is drawn
        return (image * 255.0).round().to(torch.uint8).numpy()
