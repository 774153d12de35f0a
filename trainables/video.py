"""A video trial: typed config -> clip store -> model -> the same `loop.fit` as images.

Only the data differs from an image trial: clips come from the per-node decoded-clip store
(`trainables.data.video`) and are cropped, flipped and normalised on the device, and
validation scores each video by majority vote over its clips. Augmentation is part of the
video recipe (``data.crop``, ``data.flip``), so the image-only ``augment.*`` keys are refused
rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from trainables.config import AugmentConfig, ConfigError
from trainables.data.registry import load_dataset
from trainables.data.video.clips import ClipSplits
from trainables.loop import FitResult, Reporter, fit
from trainables.seeding import seed_everything
from trainables.trial_setup import build_model, parse_trial, resolve_device


def run_video_trial(
    config: dict[str, Any],
    *,
    report: Reporter,
    resume: dict[str, Any] | None = None,
    device: str | None = None,
    artifacts: Any = None,
) -> FitResult:
    """Run one video trial to completion (``artifacts`` is accepted for the common seam;
    video trials write none yet)."""
    trial = parse_trial(config)
    changed = {k for k, v in asdict(trial.augment).items() if v != getattr(AugmentConfig(), k)}
    if changed:
        raise ConfigError(f"augment.{sorted(changed)[0]} applies to image trials; video clips "
                          "use data.crop and data.flip")
    generator = seed_everything(trial.seed)
    splits = load_dataset(trial.data)
    if not isinstance(splits, ClipSplits):
        raise ConfigError(f"data.name={trial.data.get('name')!r} is not a video dataset; "
                          "choose hmdb51 or wlasl")
    data = splits.to_device(resolve_device(device or trial.device))
    model = build_model(trial.model, num_classes=splits.num_classes)
    return fit(model, data, trial.train, report=report, generator=generator, resume=resume,
               context={"data_note": splits.description})
