"""Video clips for the training loop: windows of the clip store, cropped and normalised on the device.

Host side (`ClipSplits`): which stored videos are train / val / test, and the recipe (frames
per clip, crop, flip, normalisation). Device side (`ClipData`, a `TrialData`): each training
epoch draws one random window per video, a random crop and a flip from the trial's
generator *before* the epoch starts (so resume replays it exactly); a background thread
gathers the next batch's uint8 frames from the memory-mapped store into pinned memory while
the device trains on the current one; the device does the crop, flip, scaling and
normalisation. Validation covers each video with evenly spaced centre-cropped windows and
tags every clip with its video, so the loop scores videos by majority vote.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from trainables.data.batches import EvalBatch
from trainables.data.video.sampling import covering_starts, random_starts, window
from trainables.data.video.store import ClipStore

PREFETCH = 2  # batches gathered ahead of the one training


@dataclass(frozen=True)
class ClipSplits:
    """Stored videos per split plus the clip recipe; ``to_device`` makes the loop's view."""

    store: ClipStore
    train: np.ndarray                # positions in the store
    val: np.ndarray
    test: np.ndarray | None
    frames: int                      # frames per clip
    crop: int                        # square crop side, random in training, centre otherwise
    flip: bool                       # random horizontal flip in training
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int
    class_names: tuple[str, ...]
    description: str
    eval_clips: int | None = None    # cap on windows per validation video; None covers it all
    val_is_test: bool = False

    @property
    def skipped(self) -> int:
        return len(self.store.skipped)

    def __post_init__(self) -> None:
        height, width = self.store.frames.shape[1:3]
        if self.crop > min(height, width):
            raise ValueError(f"crop={self.crop} is larger than the stored frames {height}x{width}")
        if len(self.train) == 0:
            raise ValueError("no decodable training videos: " + self.description)

    def to_device(self, device: torch.device) -> ClipData:
        return ClipData(self, device)


class ClipData:
    """The loop's view of a video dataset (see `trainables.data.batches.TrialData`)."""

    def __init__(self, splits: ClipSplits, device: torch.device) -> None:
        self.splits = splits
        self.device = device
        self.num_classes = splits.num_classes
        self.val_is_test = splits.val_is_test
        store = splits.store
        self._labels = torch.from_numpy(store.label).to(device)
        self._mean = torch.tensor(splits.mean, device=device).view(1, 3, 1, 1, 1) * 255
        self._std = torch.tensor(splits.std, device=device).view(1, 3, 1, 1, 1) * 255

    @property
    def has_test(self) -> bool:
        return self.splits.test is not None and len(self.splits.test) > 0

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last_3d

    # ---- training -----------------------------------------------------------------------
    def train_epoch(self, batch_size: int, *, generator: torch.Generator,
                    max_batches: int | None) -> ClipBatches:
        videos = self.splits.train
        store = self.splits.store
        count = len(videos)
        order = videos[torch.randperm(count, generator=generator).numpy()]
        uniform = torch.rand(count, generator=generator, dtype=torch.float64).numpy()
        starts = random_starts(store.length[order], self.splits.frames, uniform)
        height, width = store.frames.shape[1:3]
        crop = self.splits.crop
        tops = torch.randint(0, height - crop + 1, (count,), generator=generator).numpy()
        lefts = torch.randint(0, width - crop + 1, (count,), generator=generator).numpy()
        flips = (torch.rand(count, generator=generator) < 0.5).numpy() & self.splits.flip
        batches = [slice(i, i + batch_size) for i in range(0, count, batch_size)]
        if max_batches is not None:
            batches = batches[:max_batches]
        plan = [(order[b], starts[b], tops[b], lefts[b], flips[b]) for b in batches]
        return ClipBatches(self, plan)

    # ---- evaluation ---------------------------------------------------------------------
    def eval_batches(self, split: str, batch_size: int, *,
                     max_batches: int | None) -> Iterator[EvalBatch]:
        videos = self.splits.val if split == "val" else self.splits.test
        if videos is None:
            raise ValueError(f"this dataset has no {split} split")
        store = self.splits.store
        clips = [(video, start) for video in videos
                 for start in covering_starts(int(store.length[video]), self.splits.frames,
                                              self.splits.eval_clips)]
        height, width = store.frames.shape[1:3]
        crop = self.splits.crop
        top, left = (height - crop) // 2, (width - crop) // 2
        plan = []
        for number, first in enumerate(range(0, len(clips), batch_size)):
            if max_batches is not None and number >= max_batches:
                break
            chunk = clips[first: first + batch_size]
            ids = np.array([video for video, _ in chunk], dtype=np.int64)
            starts = np.array([start for _, start in chunk], dtype=np.int64)
            size = len(chunk)
            plan.append((ids, starts, np.full(size, top), np.full(size, left),
                         np.zeros(size, dtype=bool)))
        for (ids, *_), x in zip(plan, _prefetched(self, plan), strict=True):
            groups = torch.from_numpy(ids).to(self.device)
            yield x, self._labels[groups], groups

    # ---- shared -------------------------------------------------------------------------
    def gather(self, ids: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) frames of the windows, in (pinned, when on a GPU) host memory."""
        store = self.splits.store
        rows = np.stack([store.start[v] + window(int(store.length[v]), int(s), self.splits.frames)
                         for v, s in zip(ids, starts, strict=True)])
        order = np.argsort(rows, axis=None)  # read the mapped file front to back
        flat = np.empty((rows.size, *store.frames.shape[1:]), dtype=np.uint8)
        flat[order] = store.frames[rows.reshape(-1)[order]]
        host = torch.from_numpy(flat.reshape(*rows.shape, *store.frames.shape[1:]))
        return host.pin_memory() if self.device.type == "cuda" else host

    def finish(self, host: torch.Tensor, tops: np.ndarray, lefts: np.ndarray,
               flips: np.ndarray) -> torch.Tensor:
        """On the device: crop, flip, scale and normalise to float (B, 3, T, crop, crop)."""
        frames = host.to(self.device, non_blocking=True)
        crop = self.splits.crop
        if len(set(tops.tolist())) == 1 and len(set(lefts.tolist())) == 1:
            top, left = int(tops[0]), int(lefts[0])
            frames = frames[:, :, top: top + crop, left: left + crop]
        else:
            frames = torch.stack([clip[:, t: t + crop, s: s + crop]
                                  for clip, t, s in zip(frames, tops.tolist(), lefts.tolist(),
                                                        strict=True)])
        x = frames.permute(0, 4, 1, 2, 3).float()  # (B, 3, T, H, W)
        if flips.any():
            mask = torch.from_numpy(flips).to(self.device).view(-1, 1, 1, 1, 1)
            x = torch.where(mask, x.flip(-1), x)
        return x.sub_(self._mean).div_(self._std)


class ClipBatches:
    """One epoch of training batches whose windows, crops and flips are already drawn."""

    def __init__(self, data: ClipData, plan: list[tuple[np.ndarray, ...]]) -> None:
        self.data, self.plan = data, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for (ids, *_), x in zip(self.plan, _prefetched(self.data, self.plan), strict=True):
            yield x, self.data._labels[torch.from_numpy(ids).to(self.data.device)]


def _prefetched(data: ClipData, plan: list[tuple[np.ndarray, ...]]) -> Iterator[torch.Tensor]:
    """Device batches for ``plan``, with host gathers running ``PREFETCH`` batches ahead."""
    if not plan:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="clip-gather") as pool:
        pending: deque[Future[torch.Tensor]] = deque()
        upcoming = iter(plan)
        for ids, starts, *_ in _take(upcoming, PREFETCH):
            pending.append(pool.submit(data.gather, ids, starts))
        for _, _, tops, lefts, flips in plan:
            host = pending.popleft().result()
            following = next(upcoming, None)
            if following is not None:
                pending.append(pool.submit(data.gather, following[0], following[1]))
            yield data.finish(host, tops, lefts, flips)


def _take(items: Iterator, count: int) -> list:
    return [item for _, item in zip(range(count), items, strict=False)]
