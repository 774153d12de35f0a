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

from trainables.data.batches import IndexedBatches, to_device_async


@dataclass(frozen=True)
class ArraySplits:
    """Host-side images (N, C, H, W) uint8 and int64 labels for train / val / test.

    ``val`` may be the very same arrays as ``test`` when a source used its test set for
    validation; ``val_is_test`` records that so reports can say so. ``mean``/``std`` (per
    channel, on the [0, 1] scale) make ``to_device`` normalise; they stay None where a preset
    was tuned on plain [0, 1] inputs (Reduced MNIST). ``class_names`` index like the labels.
    ``description`` is one line a trial reports as its ``data_note``.
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
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: tuple[str, ...] | None = None
    skipped: int = 0                 # unreadable source files left out (named in description)

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            x, y = getattr(self, f"x_{name}"), getattr(self, f"y_{name}")
            if x is None and name == "test":
                continue
            if x.dtype != np.uint8 or x.ndim != 4:
                raise ValueError(f"x_{name} must be uint8 (N, C, H, W); got {x.dtype} {x.shape}")
            if len(x) != len(y):
                raise ValueError(f"x_{name} has {len(x)} images but y_{name} has {len(y)} labels")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")
        channels = self.x_train.shape[1]
        if self.mean is not None and not len(self.mean) == len(self.std) == channels:
            raise ValueError(f"mean/std need {channels} values (one per channel); "
                             f"got {self.mean} / {self.std}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive; got {self.std}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    def to_device(self, device: torch.device) -> DeviceSplits:
        """Move everything to ``device`` once; scale to [0, 1] and normalise once, not per batch.

        The uint8 arrays travel (4x smaller than floats) and are converted on the device.
        """
        shift = scale = None
        if self.mean is not None and self.std is not None:
            shift = torch.tensor(self.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
            scale = torch.tensor(self.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

        def images(x: np.ndarray) -> torch.Tensor:
            out = torch.from_numpy(x).to(device).float().div_(255.0)
            if shift is not None and scale is not None:
                out.sub_(shift).div_(scale)
            return out

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
            mean=self.mean,
            std=self.std,
            val_is_test=self.val_is_test,
        )


@dataclass(frozen=True)
class DeviceSplits:
    """Float images and labels, resident on the training device.

    Images are in [0, 1], or normalised per channel when ``mean``/``std`` are set; those are
    kept so that artifacts (sample grids, attention maps) can undo the normalisation.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    num_classes: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    val_is_test: bool = False

    # ---- the loop's view (trainables.data.batches.TrialData) -------------------------------
    @property
    def device(self) -> torch.device:
        return self.x_train.device

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last

    def train_epoch(self, batch_size: int, *, generator: torch.Generator,
                    max_batches: int | None) -> IndexedBatches:
        order = list(index_batches(len(self.x_train), batch_size, device=self.device,
                                   shuffle=True, generator=generator, max_batches=max_batches))
        return IndexedBatches(self.x_train, self.y_train, order)

    def eval_batches(self, split: str, batch_size: int, *,
                     max_batches: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor, None]]:
        x, y = (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)
        if x is None or y is None:
            raise ValueError(f"this dataset has no {split} split")
        for idx in index_batches(len(x), batch_size, device=x.device, shuffle=False,
                                 max_batches=max_batches):
            yield x[idx], y[idx], None

    def unnormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Images back on the [0, 1] scale (a no-op when the data was not normalised)."""
        if self.mean is None or self.std is None:
            return x
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x * std + mean


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
    order = to_device_async(order, torch.device(device))  # once an epoch, never waited on
    stop = n - n % batch_size if drop_last else n
    for count, start in enumerate(range(0, stop, batch_size)):
        if max_batches is not None and count >= max_batches:
            return
        yield order[start : start + batch_size]


def holdout_count(n: int, val_size: int | float) -> int:
    """How many of ``n`` examples ``val_size`` asks for: an int is a count, a float a fraction.

    0 (or 0.0) means no holdout. Anything that would leave no training data is an error
    rather than a silently empty training set.
    """
    if isinstance(val_size, bool) or not isinstance(val_size, int | float):
        raise ValueError(
            f"val_size must be an int (a count) or a float (a fraction), got {val_size!r}")
    if isinstance(val_size, float):
        if not 0.0 <= val_size < 1.0:
            raise ValueError(f"val_size={val_size} as a fraction must be in [0, 1)")
        count = 0 if val_size == 0 else max(1, round(n * val_size))
    else:
        count = val_size
    if count < 0:
        raise ValueError(f"val_size={val_size} must not be negative")
    if count >= n and count > 0:
        raise ValueError(
            f"val_size={val_size} leaves no training data: there are only {n} examples")
    return count


def holdout_split(
    y: np.ndarray, val_size: int | float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train_idx, val_idx), both sorted, deterministic for ``seed``.

    Each class gives its share of the holdout (largest-remainder rounding, ties to the lower
    class), so 50000 CIFAR images with ``val_size=5000`` give exactly 500 per class. Sorted
    indices keep file order inside each part. ``val_size`` 0 returns every index as train.
    """
    y = np.asarray(y)
    n = len(y)
    count = holdout_count(n, val_size)
    if count == 0:
        return np.arange(n), np.empty(0, dtype=np.int64)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * count / n
    take = np.floor(quota).astype(np.int64)
    short = count - int(take.sum())
    by_remainder = np.lexsort((np.arange(len(classes)), -(quota - take)))
    take[by_remainder[:short]] += 1
    rng = np.random.default_rng(seed)
    # Group indices by class with one stable sort instead of one scan of y per class.
    grouped = np.split(np.argsort(y, kind="stable"), np.cumsum(counts)[:-1])
    picks = [rng.permutation(members)[:k] for members, k in zip(grouped, take, strict=True)]
    val = np.sort(np.concatenate(picks))
    keep = np.ones(n, dtype=bool)
    keep[val] = False
    return np.flatnonzero(keep), val


def stratified_subset(y: np.ndarray, count: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced subset of ``count`` examples (all when None or >= n)."""
    if count is None or count >= len(y):
        return np.arange(len(y))
    if count <= 0:
        raise ValueError(f"limit_train={count} must be positive")
    return holdout_split(y, count, seed)[1]


def with_holdout(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    val_size: int | float,
    split_seed: int,
    limit_train: int | None,
    num_classes: int,
    description: str,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    class_names: tuple[str, ...] | None = None,
) -> ArraySplits:
    """ArraySplits with validation held out of train (or val = test when ``val_size`` is 0).

    ``limit_train`` then caps the remaining training set to a class-balanced subset of that
    many examples. It is applied after the holdout so that validation is the same set with
    or without the cap: smoke runs and full runs report comparable validation numbers.
    """
    train, val = holdout_split(y_train, val_size, split_seed)
    if len(val):
        x_val, y_val = x_train[val], y_train[val]
        held = f"val {len(val)} held out of train (stratified, seed {split_seed})"
    else:
        x_val, y_val = x_test, y_test
        held = "val = test"
    n_before = len(train)
    train = train[stratified_subset(y_train[train], limit_train, split_seed)]
    capped = f" (limit_train: {len(train)} of {n_before})" if len(train) < n_before else ""
    return ArraySplits(
        x_train[train], y_train[train], x_val, y_val, x_test, y_test,
        num_classes=num_classes,
        description=f"{description}: train {len(train)}{capped}, {held}, test {len(y_test)}",
        val_is_test=not len(val), mean=mean, std=std, class_names=class_names,
    )
