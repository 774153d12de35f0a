"""Small datasets held whole as tensors: uint8 on the host, float on the training device.

Why tensors and index slices rather than a DataLoader: MNIST-sized data fits in memory many
times over, and per-sample Python (Dataset.__getitem__, collation, worker processes) costs
more than the model's forward pass on such small inputs (airbench's observation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ArraySplits:
    """Host-side images (N, C, H, W) uint8 and int64 labels for train / val / test.

    ``val`` may be the very same arrays as ``test`` when a source used its test set for
    validation; ``val_is_test`` records that so reports can say so.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int
    description: str
    val_is_test: bool = False

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            x, y = getattr(self, f"x_{name}"), getattr(self, f"y_{name}")
            if x is None and name == "test":
                continue
            if x.dtype != np.uint8 or x.ndim != 4:
                raise ValueError(f"x_{name} must be uint8 (N, C, H, W); got {x.dtype} {x.shape}")
            if len(x) != len(y):
                raise ValueError(f"x_{name} has {len(x)} images but y_{name} has {len(y)} labels")

    def to_device(self, device: torch.device) -> DeviceSplits:
        """Move everything to ``device`` once and scale to [0, 1] floats once, not per batch."""

        def images(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).to(device).float().div_(255.0)

        def labels(y: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)

        has_test = self.x_test is not None
        return DeviceSplits(
            x_train=images(self.x_train),
            y_train=labels(self.y_train),
            x_val=images(self.x_val),
            y_val=labels(self.y_val),
            x_test=images(self.x_test) if has_test else None,
            y_test=labels(self.y_test) if has_test else None,
            num_classes=self.num_classes,
        )


@dataclass(frozen=True)
class DeviceSplits:
    """Float images in [0, 1] and labels, resident on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    num_classes: int


def index_batches(
    n: int,
    batch_size: int,
    *,
    device: torch.device,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    max_batches: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield index tensors that slice a device-resident dataset into batches.

    The permutation is drawn on the CPU generator (seeded per trial) and moved once, so the
    order is identical on CPU and GPU for the same seed.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(device)
    stop = n - n % batch_size if drop_last else n
    for count, start in enumerate(range(0, stop, batch_size)):
        if max_batches is not None and count >= max_batches:
            return
        yield order[start : start + batch_size]
