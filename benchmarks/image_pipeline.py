"""Is a CIFAR ResNet-20 epoch bound by data handling? Our device path vs a torchvision DataLoader.

Both pipelines feed the same model the same kind of batches (random crop with 4 px padding,
horizontal flip, normalisation, batch 128), measured side by side in one process:

- ours: uint8 data moved to the device once, normalised once, index-slice batches,
  `RandomCropFlip` on whole batches (trainables.data);
- torchvision: a map-style Dataset over the same uint8 array with per-sample
  `RandomCrop(32, 4)`, `RandomHorizontalFlip`, `ToTensor`, `Normalize`, a `DataLoader` with
  `--workers` worker processes, pinned memory on CUDA.

It prints, for each: batches/s of the data path alone, and the time of a training epoch of
`--batches` steps (forward, backward, SGD step), then the ratios. With `--device cuda` and
`--precision fp32,bf16` it also prints ResNet-20 training images/s per precision.

    .venv/bin/python benchmarks/image_pipeline.py                       # CPU, 40 batches
    .venv/bin/python benchmarks/image_pipeline.py --device cuda --batches 200 --precision fp32,bf16

The data are CIFAR-10-shaped images written by the CIFAR generator in the real pickle format
and read back through the real loader (no download); their content does not affect speed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.data.augment import RandomCropFlip, fill_for
from trainables.data.cifar import load_cifar, write_cifar
from trainables.data.splits import index_batches
from trainables.models.registry import get_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_batches(x: torch.Tensor, y: torch.Tensor, augment: RandomCropFlip, batch: int,
                   count: int, generator: torch.Generator) -> Iterable[tuple[torch.Tensor, ...]]:
    for idx in index_batches(len(x), batch, device=x.device, shuffle=True, generator=generator,
                             drop_last=True, max_batches=count):
        yield augment(x[idx]), y[idx]


class _TorchvisionCifar(torch.utils.data.Dataset):
    """The usual per-sample pipeline: PIL image -> crop -> flip -> tensor -> normalise."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std) -> None:
        from torchvision import transforms

        self.images = images.transpose(0, 2, 3, 1)  # (N, H, W, C) for PIL
        self.labels = labels
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def loader_batches(dataset: _TorchvisionCifar, batch: int, count: int, workers: int,
                   device: torch.device) -> Iterable[tuple[torch.Tensor, ...]]:
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
        pin_memory=device.type == "cuda", persistent_workers=False)
    for step, (xb, yb) in enumerate(loader):
        if step >= count:
            return
        yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)


def time_data_only(make: Callable[[], Iterable], device: torch.device) -> float:
    """Seconds to produce every batch (touching each on the device), no model."""
    start = time.perf_counter()
    total = torch.zeros((), device=device)
    for xb, _ in make():
        total += xb[:, 0, 0, 0].sum()
    _sync(device)
    return time.perf_counter() - start


def time_training(make: Callable[[], Iterable], model: nn.Module, device: torch.device,
                  precision: str = "fp32") -> tuple[float, int]:
    """Seconds and images for one pass of SGD steps over the batches."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    model.train()
    images = 0
    _sync(device)
    start = time.perf_counter()
    for xb, yb in make():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(xb).float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images += len(yb)
    _sync(device)
    return time.perf_counter() - start, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, default=40, help="training steps per measurement")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--images", type=int, default=10_000, help="training images generated")
    parser.add_argument("--precision", default="", help="also time these, e.g. fp32,bf16 (GPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as root:
        write_cifar(root, classes=10, n_train=args.images, n_test=100)
        splits = load_cifar(root, classes=10, val_size=0, split_seed=0)
    data = splits.to_device(device)
    generator = torch.Generator().manual_seed(0)
    augment = RandomCropFlip(padding=4, flip=True, fill=fill_for(splits.mean, splits.std),
                             generator=generator)
    dataset = _TorchvisionCifar(splits.x_train, splits.y_train, splits.mean, splits.std)
    count, batch = args.batches, args.batch_size

    def ours():
        return device_batches(data.x_train, data.y_train, augment, batch, count, generator)

    def theirs():
        return loader_batches(dataset, batch, count, args.workers, device)

    print(f"device {device}, {count} batches of {batch}, torch threads "
          f"{torch.get_num_threads()}, DataLoader workers {args.workers}")
    # Warm-up: first-touch allocation, worker start-up code paths, kernel selection.
    time_data_only(lambda: device_batches(data.x_train, data.y_train, augment, batch, 2,
                                          generator), device)
    ours_data = time_data_only(ours, device)
    theirs_data = time_data_only(theirs, device)
    print(f"data only   ours {count / ours_data:8.1f} batches/s   torchvision "
          f"{count / theirs_data:8.1f} batches/s   ratio {theirs_data / ours_data:6.1f}x")

    model = get_model("cifar_resnet20", num_classes=10).to(device)
    time_training(lambda: device_batches(data.x_train, data.y_train, augment, batch, 2,
                                         generator), model, device)
    ours_train, n = time_training(ours, model, device)
    theirs_train, _ = time_training(theirs, model, device)
    print(f"train epoch ours {ours_train:8.2f} s ({n / ours_train:7.0f} img/s)   torchvision "
          f"{theirs_train:8.2f} s ({n / theirs_train:7.0f} img/s)   "
          f"ratio {theirs_train / ours_train:5.2f}x")
    print(f"data share of our epoch: {ours_data / ours_train:.1%}; "
          f"of the DataLoader epoch: {min(theirs_data / theirs_train, 1):.1%}")

    for precision in filter(None, args.precision.split(",")):
        time_training(ours, model, device, precision)  # warm-up per precision
        seconds, n = time_training(ours, model, device, precision)
        print(f"ResNet-20 {precision:>5}: {n / seconds:9.0f} training images/s")


if __name__ == "__main__":
    main()
