"""Per-channel mean/std on the [0, 1] scale: published constants and a way to compute them.

The constants are the ones the literature (and torchvision recipes) use, computed over each
dataset's training images, so runs here are comparable with published numbers.
"""

from __future__ import annotations

import numpy as np

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per channel of uint8 images (N, C, H, W), on the [0, 1] scale.

    Sums in float64 over chunks so a large folder never needs a float copy of all images.
    A channel with zero spread gets std 1 so normalising never divides by zero.
    """
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"need a non-empty (N, C, H, W) array, got {x.shape}")
    channels = x.shape[1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].astype(np.float64) / 255.0
        total += part.sum(axis=(0, 2, 3))
        squares += np.square(part).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std = np.where(std > 1e-6, std, 1.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
