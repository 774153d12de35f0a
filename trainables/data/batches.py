"""What the training loop needs from a dataset, whatever the modality.

Why a protocol rather than a DataLoader: small image and spectrogram sets live on the device
as whole tensors and a batch is an index slice (`DeviceSplits`), while video clips are too
big for that and are gathered from a memory-mapped clip store (`trainables.data.video.clips`).
The loop should not care which: it asks for one epoch of training batches and for
evaluation batches, and both kinds of data answer. Evaluation batches carry an optional
*group* per example (the video a clip came from), so accuracy can be scored per video by
majority vote over its clips, as video papers report it, instead of per clip.
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


class IndexedBatches:
    """Training batches as index slices of device-resident tensors."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, order: list[torch.Tensor]) -> None:
        self.x, self.y, self.order = x, y, order

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in self.order:
            yield self.x[idx], self.y[idx]
