"""What the training loop needs from a dataset, whatever the modality.

Why a protocol rather than a DataLoader: small image and spectrogram sets live on the device
as whole tensors and a batch is an index slice (`DeviceSplits`), while video clips are too
big for that and are gathered from a memory-mapped clip store (`trainables.data.video.clips`).
The loop should not care which: it asks for one epoch of training batches and for
evaluation batches, and both kinds of data answer. Evaluation batches carry an optional
*group* per example (the video a clip came from), so accuracy can be scored per video by
majority vote over its clips, as video papers report it, instead of per clip.

No step may make the host wait for the device. On CUDA a copy from ordinary (pageable) host
memory, or any copy without ``non_blocking=True``, waits for every kernel already queued, and
so do ``.item()``, ``bool()``, ``int()`` and ``.tolist()`` of a device tensor and indexing a
device tensor with a host index tensor. What a step needs from the host is therefore drawn
before the epoch (or on the host, per batch) and sent with `to_device_async`; the loop's
deliberate syncs (its divergence check every few steps, the end of an epoch) are the only ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Literal, Protocol

import torch

Split = Literal["val", "test"]
EvalBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # inputs, labels, groups


class EpochBatches(Sized, Iterable[tuple[torch.Tensor, torch.Tensor]], Protocol):
    """One epoch of (inputs, labels) training batches whose count is known up front."""


class TrialData(Protocol):
    """A dataset ready for `loop.fit`: batches arrive on `device`, already normalised."""

    device: torch.device
    num_classes: int
    # Validation is the test split (the source validated on test): the loop then must not
    # choose an epoch by it, or the reported test number is the best of several looks.
    val_is_test: bool

    @property
    def has_test(self) -> bool: ...

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last for 4-D images, channels_last_3d for 5-D clips."""
        ...

    def train_epoch(self, batch_size: int, *, generator: torch.Generator,
                    max_batches: int | None) -> EpochBatches:
        """Draw this epoch's order (and any per-epoch sampling) from ``generator`` now, so a
        resumed trial that restores the generator replays the same epoch."""
        ...

    def eval_batches(self, split: Split, batch_size: int, *,
                     max_batches: int | None) -> Iterator[EvalBatch]: ...


def to_device_async(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``host`` on ``device`` without making the host wait for the device.

    On CUDA the tensor is copied into pinned memory and sent with ``non_blocking=True``: the
    copy is queued behind the work already on the stream, which is the order every later use
    needs. The pinned block is not reused before the copy has read it (the caching host
    allocator records an event for it), so the caller may drop ``host`` at once. Elsewhere a
    plain ``.to``.
    """
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


class IndexedBatches:
    """Training batches as index slices of device-resident tensors.

    Indices not yet on the data's device travel there once, together, when the epoch is
    built: indexing a device tensor with a host index would copy (and wait) every step.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, order: list[torch.Tensor]) -> None:
        if any(idx.device != x.device for idx in order):
            sizes = [len(idx) for idx in order]
            moved = to_device_async(torch.cat([idx.cpu() for idx in order]), x.device)
            order = list(moved.split(sizes))
        self.x, self.y, self.order = x, y, order

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in self.order:
            yield self.x[idx], self.y[idx]
