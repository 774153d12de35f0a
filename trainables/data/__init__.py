"""Datasets in their real on-disk formats, plus generators of those formats for tests."""

from trainables.data.augment import RandomCropFlip, fill_for
from trainables.data.cifar import DatasetCorruptError, load_cifar
from trainables.data.errors import DatasetMissingError
from trainables.data.image_folder import load_image_folder
from trainables.data.mnist import load_mnist
from trainables.data.splits import ArraySplits, DeviceSplits, holdout_split

__all__ = [
    "ArraySplits",
    "DatasetCorruptError",
    "DatasetMissingError",
    "DeviceSplits",
    "RandomCropFlip",
    "fill_for",
    "holdout_split",
    "load_cifar",
    "load_image_folder",
    "load_mnist",
]
