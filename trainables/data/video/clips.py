"""Video clips for the training loop: windows of the clip store, cropped and normalised on the device.

Host side (`ClipSplits`): which stored videos are train / val / test, and the recipe (frames
per clip, crop, flip, normalisation). Device side (`ClipData`, a `TrialData`): each training
epoch draws one random window per video, a random crop and a flip from the trial's
generator *before* the epoch starts (so resume replays it exactly); a background thread
gathers the next batch's uint8 frames from the memory-mapped store into pinned memory while
the device trains on the current one; the device does the crop, flip, scaling and
normalisation. Validation covers each video with evenly spaced centre-cropped windows and
tags every clip with its video, so the loop scores videos by majority vote.

No step waits for the device: the frames cross from pinned memory without blocking, and the
labels, flip flags and video ids of a whole epoch (or evaluation) cross in one such copy
before its first batch; each batch takes a slice of them (see `trainables.data.batches`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from trainables.data.batches import EvalBatch, to_device_async
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
        # The epoch's labels and flip flags cross once, now; each batch slices them.
        labels, flip_mask = self._send(store.label[order], flips)
        plan = [_Batch(order[b], starts[b], tops[b], lefts[b], flips[b], labels[b], flip_mask[b])
                for b in batches]
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
        batches = [slice(first, first + batch_size) for first in range(0, len(clips), batch_size)]
        if max_batches is not None:
            batches = batches[:max_batches]
        clips = clips[: batches[-1].stop] if batches else []
        ids = np.array([video for video, _ in clips], dtype=np.int64)
        starts = np.array([start for _, start in clips], dtype=np.int64)
        # Video ids and labels of the whole evaluation cross once, before its first batch.
        groups, labels = self._send(ids, store.label[ids])
        size = len(clips)
        tops, lefts, flips = np.full(size, top), np.full(size, left), np.zeros(size, dtype=bool)
        plan = [_Batch(ids[b], starts[b], tops[b], lefts[b], flips[b], labels[b], None, groups[b])
                for b in batches]
        for batch, x in zip(plan, _prefetched(self, plan), strict=True):
            yield x, batch.labels, batch.groups

    def _send(self, *columns: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Equal-length integer or bool host columns on the device, in one copy that does not
        wait for it; bool columns come back bool, the rest int64."""
        packed = to_device_async(torch.from_numpy(np.stack(columns).astype(np.int64)), self.device)
        return tuple(row.bool() if c.dtype == bool else row
                     for row, c in zip(packed, columns, strict=True))

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
               flips: np.ndarray, flip_mask: torch.Tensor | None = None) -> torch.Tensor:
        """On the device: crop, flip, scale and normalise to float (B, 3, T, crop, crop).

        ``flips`` (host) says whether any clip flips; ``flip_mask`` is the same flags already
        on the device (required when any does), so flipping copies nothing per batch."""
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
            if flip_mask is None:
                raise ValueError("flipping needs the flip flags on the device (flip_mask)")
            x = torch.where(flip_mask.view(-1, 1, 1, 1, 1), x.flip(-1), x)
        return x.sub_(self._mean).div_(self._std)


@dataclass(frozen=True)
class _Batch:
    """One batch's windows (host arrays, for the gather and the crop) and what the step
    needs on the device: labels, flip flags and video ids, slices of one copy per epoch."""

    ids: np.ndarray          # positions in the store
    starts: np.ndarray       # first stored frame of each window
    tops: np.ndarray
    lefts: np.ndarray
    flips: np.ndarray        # host flags: whether to flip at all
    labels: torch.Tensor     # on the device
    flip_mask: torch.Tensor | None  # the flags on the device; None in evaluation
    groups: torch.Tensor | None = None  # the video ids on the device (evaluation)


class ClipBatches:
    """One epoch of training batches whose windows, crops and flips are already drawn."""

    def __init__(self, data: ClipData, plan: list[_Batch]) -> None:
        self.data, self.plan = data, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch, x in zip(self.plan, _prefetched(self.data, self.plan), strict=True):
            yield x, batch.labels


def _prefetched(data: ClipData, plan: list[_Batch]) -> Iterator[torch.Tensor]:
    """Device batches for ``plan``, with host gathers running ``PREFETCH`` batches ahead."""
    if not plan:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="clip-gather") as pool:
        pending: deque[Future[torch.Tensor]] = deque()
        upcoming = iter(plan)
        for batch in _take(upcoming, PREFETCH):
            pending.append(pool.submit(data.gather, batch.ids, batch.starts))
        for batch in plan:
            host = pending.popleft().result()
            following = next(upcoming, None)
            if following is not None:
                pending.append(pool.submit(data.gather, following.ids, following.starts))
            yield data.finish(host, batch.tops, batch.lefts, batch.flips, batch.flip_mask)


def _take(items: Iterator, count: int) -> list:
    return [item for _, item in zip(range(count), items, strict=False)]
