"""The one error a user sees when a dataset is not where a preset expects it."""

from __future__ import annotations


class DatasetMissingError(FileNotFoundError):
    """Raised with a single line naming the expected layout, so the CLI can print it as is."""
