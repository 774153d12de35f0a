"""Datasets in their real on-disk formats, plus generators of those formats for tests."""

from trainables.data.errors import DatasetMissingError
from trainables.data.splits import ArraySplits, DeviceSplits

__all__ = ["ArraySplits", "DatasetMissingError", "DeviceSplits"]
