"""A study as a frozen, typed object: what to sweep, how to schedule it, what the source said."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from search_spaces.sources import Source

Scheduler = Literal["fifo", "asha", "asha-per-variant", "halving-per-variant"]
Search = Literal["random", "optuna", "grid"]  # "grid": the older name of "random"


@dataclass(frozen=True)
class Resources:
    """Per-trial resources. Fractional ``gpu`` packs several trials onto one GPU."""

    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class Experiment:
    """One named study (a preset).

    ``param_space`` is the nested trial config with Ray Tune domains: ``tune.grid_search``
    on the ablation axes (named in ``variant_keys``) and random domains on hyperparameters.
    With ``num_samples`` 1 every grid point (arm) trains its recipe on ``seeds`` seeds. With
    more, each arm first tunes ``search_space`` with that many draws, then its chosen
    config is replicated on ``seeds`` fresh seeds (see orchestrator.protocol).
    """

    name: str
    source: Source | str                         # the publication or repository, and its part
    trainable: Literal["image", "audio", "video"]
    modality: str                                # "image" | "spectrogram" | "video"
    param_space: Mapping[str, Any]
    variant_keys: tuple[str, ...]                # dotted keys whose values name a variant
    reported: Mapping[str, Mapping[str, float]]  # variant -> {"test_acc": ..., ...}
    baseline_variant: str
    description: str = ""
    metric: str = "val_acc"
    mode: Literal["max", "min"] = "max"
    scheduler: Scheduler = "halving-per-variant"
    search: Search = "grid"
    num_samples: int = 1
    seeds: int = 3
    resources: Resources = field(default_factory=Resources)
    # Epochs before a tuning candidate may be stopped (the first halving/ASHA rung). None: a
    # fifth of the epochs. At 1 epoch of 10, halving on mnist_attention cut every slow-
    # starting self-attention candidate and chose one 6.5 points worse than the full-budget
    # best; at 2 it was within 0.5 (benchmarks/RESULTS.md).
    grace_period: int | None = None
    reduction_factor: float = 3
    smoke: Mapping[str, Any] = field(default_factory=lambda: {"train.epochs": 2, "train.max_batches": 4})
    reported_note: str = ""                      # how the source measured its numbers
    # Named bundles of overrides (`--profile NAME`): {"dotted.key": value}. Applied after
    # the preset and before `--set`, e.g. one shared recipe for every variant, or MNIST.
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # What the source reported for the setting a profile selects (e.g. its MNIST numbers):
    # profile -> (reported, reported_note), used instead of `reported` when it is applied.
    profile_reported: Mapping[str, tuple[Mapping[str, Mapping[str, float]], str]] = field(
        default_factory=dict)
    # The hyperparameters the source tuned or says should be tuned: dotted key -> a Ray Tune
    # domain, or `search_spaces.tuning.PerArm` when the range depends on the arm. Used only
    # with `--samples N > 1`; the recipe in `param_space` stays the default point.
    search_space: Mapping[str, Any] = field(default_factory=dict)
    search_space_note: str = ""                  # where the ranges come from
    # The equivalence margin of the verdicts, in the metric's units: an arm within it of the
    # baseline is "equivalent". None: analysis.verdicts.DEFAULT_MARGIN (half an accuracy
    # point). `--margin` overrides it.
    margin: float | None = None
