"""An image-classification trial: typed config -> data on the device -> model -> loop.fit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainables.config import ConfigError, TrialConfig
from trainables.data.registry import load_dataset
from trainables.data.splits import ArraySplits
from trainables.explain import ArtifactWriter
from trainables.loop import FitResult, Reporter, fit
from trainables.seeding import seed_everything
from trainables.trial_setup import build_model, parse_trial, resolve_device


def build_augment(trial: TrialConfig, splits: ArraySplits,
                  generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The batched on-device augmentation the trial asks for, or None.

    Order: crop/flip, then masks, then noise, so masked bands get noise like the rest of
    the input (masking after noise would leave perfectly silent bands, a cue no real input has).
    """
    from trainables.data.augment import (
        Compose,
        GaussianNoise,
        RandomCropFlip,
        SpectrogramMask,
        fill_for,
    )

    aug = trial.augment
    # Pad and mask with black pixels / silence, whatever the normalisation.
    fill = fill_for(splits.mean, splits.std) if splits.mean is not None else 0.0
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    if aug.crop_padding or aug.flip:
        steps.append(RandomCropFlip(padding=aug.crop_padding, flip=aug.flip, fill=fill,
                                    generator=generator))
    if aug.freq_mask or aug.time_mask:
        if isinstance(fill, tuple) and len(set(fill)) > 1:
            raise ConfigError("augment.freq_mask/time_mask need one fill value; this dataset "
                              "normalises channels differently")
        steps.append(SpectrogramMask(freq_width=aug.freq_mask, time_width=aug.time_mask,
                                     count=aug.mask_count,
                                     fill=fill[0] if isinstance(fill, tuple) else fill,
                                     generator=generator))
    if aug.noise_std:
        steps.append(GaussianNoise(aug.noise_std, generator=generator))
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else Compose(steps)


def run_image_trial(
    config: dict[str, Any],
    *,
    report: Reporter,
    resume: dict[str, Any] | None = None,
    device: str | None = None,
    artifacts: ArtifactWriter | None = None,
) -> FitResult:
    """Run one trial to completion. ``device`` overrides the config's (the Ray seam knows
    whether the trial was given a GPU; the config cannot). With ``artifacts``, a trial that
    ends with usable weights saves what its model looked at (see trainables.explain)."""
    trial = parse_trial(config)
    generator = seed_everything(trial.seed)
    splits = load_dataset(trial.data)
    data = splits.to_device(resolve_device(device or trial.device))
    model = build_model(trial.model, in_channels=splits.x_train.shape[1],
                        num_classes=splits.num_classes,
                        input_size=tuple(splits.x_train.shape[2:4]))
    augment = build_augment(trial, splits, generator)

    def save_artifacts(final: torch.nn.Module) -> None:
        from trainables.explain import write_artifacts

        write_artifacts(final, data, splits.x_val, artifacts, class_names=splits.class_names,
                        max_batches=trial.train.max_batches,
                        eval_batch_size=trial.train.eval_batch_size)

    return fit(model, data, trial.train, report=report, generator=generator, resume=resume,
               augment=augment, on_finish=save_artifacts if artifacts is not None else None,
               context={"data_note": splits.description})
