"""Probe and decode video files with decord, turning every decoder failure into one error type.

Why decord: it decodes only the frames asked for (seeking to the nearest key frame) and
releases the GIL, so a thread pool decodes several files at once. It is an optional extra
(``decord2``), imported inside the functions so the rest of the project works without it.

Why one error type: a real collection has damaged files (cut-off downloads, zero-byte
copies). Whatever decord raises for them, callers get ``CorruptVideoError`` with a one-line
message naming the file, and can skip it and say so, instead of a multi-line C++ trace.

A cut-off AVI is the one damage decord does not report: without the index at the end of the
file it opens and shows a handful of frames. ``probe`` compares that count with the frame
count the AVI header declares and calls a large shortfall truncation.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# A decodable count below this share of the AVI header's count means a cut-off file. Real
# files differ from their header by a frame or two (packed B-frames), never by 10%.
AVI_TRUNCATION_SHARE = 0.9


class CorruptVideoError(Exception):
    """A video file that cannot be used; the one-line message names the file and the reason."""


class DecoderMissingError(ImportError):
    """decord is not installed (it is the project's optional ``video`` extra)."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    height: int
    width: int


def _decord() -> Any:
    from trainables.data.video.codecs import import_decord

    try:
        return import_decord()
    except ImportError as err:
        raise DecoderMissingError("video decoding needs decord: pip install decord2 "
                                  "(the project's `video` extra)") from err


def _reason(err: BaseException) -> str:
    """decord's first message line without its ``[time] file.cc:line:`` prefix, kept short."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    text = re.sub(r"^(\[[\d:]+\]\s*\S+?:\d+:\s*)+", "", text).strip()
    text = re.sub(r"^Check failed: .*?\(-?\d+ vs\. -?\d+\)\s*", "", text) or text
    return (text or type(err).__name__)[:160]


def _open(path: Path) -> Any:
    """A decord VideoReader for ``path``; CorruptVideoError when it cannot be opened."""
    decord = _decord()
    if not path.is_file():
        raise CorruptVideoError(f"{path}: no such file")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except MemoryError:
        raise
    except Exception as err:  # decord raises RuntimeError or DECORDError (not a RuntimeError)
        raise CorruptVideoError(f"{path}: cannot open ({_reason(err)})") from None


def avi_header_frames(path: Path) -> int | None:
    """The total frame count an AVI's main header (``avih``) declares, or None if not an AVI."""
    with open(path, "rb") as stream:
        head = stream.read(4096)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return None
    at = head.find(b"avih")
    if at < 0 or at + 28 > len(head):
        return None
    # avih: dwMicroSecPerFrame, dwMaxBytesPerSec, dwPaddingGranularity, dwFlags, dwTotalFrames
    return struct.unpack_from("<I", head, at + 8 + 16)[0] or None


def _frame_count(reader: Any, path: Path) -> int:
    count = len(reader)
    if count <= 0:
        raise CorruptVideoError(f"{path}: no frames")
    declared = avi_header_frames(path)
    if declared and count < AVI_TRUNCATION_SHARE * declared and declared - count > 2:
        raise CorruptVideoError(f"{path}: truncated ({count} of the {declared} frames its "
                                "AVI header declares are readable)")
    return count


def probe(path: Path) -> VideoInfo:
    """Frame count, rate and frame size; decodes the first frame so a garbage stream fails here.

    Raises CorruptVideoError for a missing, unreadable, empty or cut-off file. A file whose
    late frames are damaged can still pass; ``decode_frames`` fails on it when asked for them.
    """
    path = Path(path)
    reader = _open(path)
    try:
        count = _frame_count(reader, path)
        first = reader[0].asnumpy()
        fps = float(reader.get_avg_fps())
    except CorruptVideoError:
        raise
    except MemoryError:
        raise
    except Exception as err:
        raise CorruptVideoError(f"{path}: cannot decode ({_reason(err)})") from None
    return VideoInfo(num_frames=count, fps=fps, height=int(first.shape[0]),
                     width=int(first.shape[1]))


def _crop_box(bbox: tuple[int, int, int, int], height: int, width: int, path: Path
              ) -> tuple[int, int, int, int] | None:
    """``bbox`` clamped to the frame as (y0, y1, x0, x1); None when nothing of it is inside."""
    x0, y0, x1, y1 = (round(float(v)) for v in bbox)
    x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
    y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
    if x1 <= x0 or y1 <= y0:
        log.warning("%s: bbox %s lies outside the %dx%d frame; using the whole frame", path,
                    tuple(bbox), width, height)
        return None
    return y0, y1, x0, x1


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 to (N, *size, 3) uint8: bilinear with antialiasing, rounded.

    Done after decoding because decord's decode-time resize fails for widths under 56, and
    done on the whole stack at once because one interpolate call is far cheaper than N.
    """
    import torch
    import torch.nn.functional as F

    height, width = size
    if frames.shape[1:3] == (height, width):
        return frames
    if not len(frames):
        return np.zeros((0, height, width, frames.shape[3]), dtype=np.uint8)
    stack = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    out = F.interpolate(stack, size=(height, width), mode="bilinear", align_corners=False,
                        antialias=True)
    out = out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return np.ascontiguousarray(out.numpy())


def decode_frames(path: Path, indices: Sequence[int] | np.ndarray, *,
                  size: tuple[int, int] | None = None,
                  bbox: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """(len(indices), H, W, 3) uint8 RGB frames of ``path``.

    Indices are clamped into the video (duplicates allowed, any order); each distinct frame
    is decoded once. ``bbox`` (x0, y0, x1, y1) crops, clamped to the frame, before ``size``
    (height, width) resizes. A bbox entirely outside the frame is ignored with a warning:
    the clip is still usable, and a data loader should not stop over one stale box.
    """
    path = Path(path)
    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    reader = _open(path)
    try:
        count = _frame_count(reader, path)
        wanted = np.clip(wanted, 0, count - 1)
        # An empty request still decodes frame 0, for the output's frame size.
        distinct, inverse = np.unique(wanted if len(wanted) else np.zeros(1, np.int64),
                                      return_inverse=True)
        frames = reader.get_batch(distinct.tolist()).asnumpy()
    except CorruptVideoError:
        raise
    except MemoryError:
        raise
    except Exception as err:
        raise CorruptVideoError(f"{path}: cannot decode frames ({_reason(err)})") from None
    if frames.ndim != 4 or frames.shape[0] != len(distinct):
        raise CorruptVideoError(f"{path}: decoder returned {frames.shape[0]} frames for "
                                f"{len(distinct)} requested")
    frames = frames[inverse.reshape(-1)] if len(wanted) else frames[:0]
    if bbox is not None:
        box = _crop_box(bbox, frames.shape[1], frames.shape[2], path)
        if box is not None:
            y0, y1, x0, x1 = box
            frames = frames[:, y0:y1, x0:x1]
    if size is not None:
        frames = resize_frames(frames, size)
    return np.ascontiguousarray(frames)
