"""Seed every random number generator a trial touches, so a (config, seed) pair repeats."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator for batch order.

    A dedicated generator for shuffling keeps the data order independent of how many random
    numbers model construction happened to draw, so two variants see the same batches.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed + 7919)  # a different stream from the init's
    return generator
