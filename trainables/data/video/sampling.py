"""Which frames of a video are stored, and which stored frames make a clip.

Why store a frame *sequence* per video rather than fixed clips: HMDB51's recipe (the 3DCNN +
attention study, vuthanhtung2412/3DCNN-Attention-mechanism) takes 16 frames spread over
2 seconds, a new random 2-second window of each video every training epoch, and uniform
windows covering each video for validation. Decoding at the clip's frame rate
(16 frames / 2 s = 8 fps) once and keeping every such frame means any window is 16
consecutive stored frames: a random training clip costs a slice, not a decode, and the store
holds each frame once instead of once per overlapping clip (HMDB51 at 128x171: about 1.7 MB
per video). WLASL's recipe (Part II of "How Attention Affects CNN Modules During Training")
takes a fixed set of 8 frames around the centre of the sign, so its store holds exactly
those frames and every "window" is the whole sequence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from trainables.data.video.decode import VideoInfo
from trainables.data.video.index import VideoEntry

FALLBACK_FPS = 30.0  # containers that report no frame rate: HMDB51's AVIs are 30 fps


@dataclass(frozen=True)
class FrameSampling:
    """How a video becomes stored frames.

    ``rate``: frames at ``frames / clip_seconds`` per second over the action's frame range.
    ``centre``: ``frames`` frames ``stride`` apart, centred on the middle of the range.
    """

    kind: Literal["rate", "centre"]
    frames: int                      # frames per clip
    clip_seconds: float = 2.0        # rate only: the time one clip spans
    stride: int = 1                  # centre only: source frames between samples

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames={self.frames} must be >= 1")
        if self.kind == "rate" and self.clip_seconds <= 0:
            raise ValueError(f"clip_seconds={self.clip_seconds} must be > 0")
        if self.kind == "centre" and self.stride < 1:
            raise ValueError(f"frame_stride={self.stride} must be >= 1")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def stored_indices(sampling: FrameSampling, info: VideoInfo, entry: VideoEntry) -> np.ndarray:
    """Source frame numbers (0-based, ascending, possibly repeated) to decode and store."""
    first, last = max(entry.frame_start, 0), info.num_frames
    if entry.frame_end is not None:
        last = min(entry.frame_end, info.num_frames)
    if first >= info.num_frames:
        # WLASL's preprocessing cuts YouTube-sourced videos to the sign and leaves the
        # index's frame numbers as they were: a range past the end means a pre-cut file.
        first, last = 0, info.num_frames
    first = min(first, max(last - 1, 0))
    last = max(last, first + 1)
    if sampling.kind == "centre":
        centre = (first + last - 1) / 2
        offsets = (np.arange(sampling.frames) - (sampling.frames - 1) / 2) * sampling.stride
        return np.clip(np.rint(centre + offsets), first, last - 1).astype(np.int64)
    fps = info.fps if info.fps and math.isfinite(info.fps) and info.fps > 0 else FALLBACK_FPS
    step = fps * sampling.clip_seconds / sampling.frames  # source frames per stored frame
    count = max(1, math.ceil((last - first) / step))
    return np.minimum(first + np.floor(np.arange(count) * step), last - 1).astype(np.int64)


def window(length: int, start: int, frames: int) -> np.ndarray:
    """Stored-frame offsets of one clip; a video shorter than a clip loops from its start."""
    return (start + np.arange(frames)) % max(length, 1)


def random_starts(lengths: np.ndarray, frames: int, uniform: np.ndarray) -> np.ndarray:
    """One random window start per video from ``uniform`` draws in [0, 1)."""
    room = np.maximum(lengths - frames, 0) + 1
    return np.minimum(np.floor(uniform * room), room - 1).astype(np.int64)


def covering_starts(length: int, frames: int, limit: int | None = None) -> np.ndarray:
    """Starts of evenly spaced windows that together cover a video (validation clips).

    ceil(length / frames) windows, first at 0 and last ending at the final frame; ``limit``
    caps the count for very long videos.
    """
    count = max(1, math.ceil(length / frames))
    if limit is not None:
        count = max(1, min(count, limit))
    return np.unique(np.rint(np.linspace(0, max(length - frames, 0), count))).astype(np.int64)
