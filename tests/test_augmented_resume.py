"""Seeded trials with every batch augmentation, and video clips, repeat exactly: twice in a
row, and resumed from a mid-run checkpoint. The augmentations' draws come from the trial's
CPU generator (copied to the device without blocking), whose state the checkpoint keeps."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

TIMES = {"epoch_time_s", "samples_per_s", "train_time_s", "gpu_mem_mb"}


def _rows(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMES} for row in rows]


def _recorder():
    rows: list[dict] = []
    states: list[dict | None] = []

    def report(metrics, state):
        rows.append(metrics)
        states.append(copy.deepcopy(state))  # a state shares tensors with the live model

    return rows, states, report


def test_an_augmented_spectrogram_trial_repeats_and_resumes_exactly(tmp_path, cpu):
    from trainables.image import run_image_trial

    config = {
        "seed": 3,
        "data": {"name": "fsdd", "split": "random", "height": 32, "width": 32,
                 "cache_dir": str(tmp_path)},
        "model": {"name": "spectro_lenet"},
        "augment": {"crop_padding": 2, "flip": True, "freq_mask": 4, "time_mask": 5,
                    "mask_count": 2, "noise_std": 0.05},
        "train": {"epochs": 3, "batch_size": 16, "max_batches": 3, "checkpoint_every": 1,
                  "lr": 3e-3},
    }
    runs = []
    for _ in range(2):
        rows, states, report = _recorder()
        run_image_trial(config, report=report, device="cpu")
        runs.append((rows, states))
    (first, states), (second, _) = runs
    assert len(first) == 3 and _rows(first) == _rows(second)
    rows, _, report = _recorder()
    run_image_trial(config, report=report, device="cpu", resume=states[0])
    assert _rows(rows) == _rows(first[1:])
    # The augmentations did something: without them the same seed trains differently.
    plain, _, report = _recorder()
    run_image_trial({**config, "augment": {}}, report=report, device="cpu")
    assert _rows(plain) != _rows(first)


def test_a_video_trial_resumes_exactly(tmp_path, cpu):
    from tests.conftest import needs_video_codecs

    needs_video_codecs()
    from tests.test_video_clips import TinyVideoNet
    from trainables.config import TrainConfig
    from trainables.data.registry import Hmdb51Config, _hmdb51
    from trainables.data.video.synth import write_hmdb51
    from trainables.loop import fit
    from trainables.seeding import seed_everything

    root = Path(tmp_path) / "hmdb51"
    write_hmdb51(root, classes=3, videos_per_class=5, seconds=2.0, fps=12, size=(64, 80), seed=3)
    splits = _hmdb51(Hmdb51Config(root=str(root), frames=8, height=48, width=64, crop=40,
                                  cache_dir=str(tmp_path / "cache")))
    data = splits.to_device(torch.device("cpu"))
    cfg = TrainConfig(epochs=3, batch_size=4, eval_batch_size=8, lr=1e-2, restore_best=False,
                      checkpoint_every=1)

    def run(resume=None):
        torch.manual_seed(0)  # the model's initial weights; resume replaces them
        rows, states, report = _recorder()
        fit(TinyVideoNet(splits.num_classes), data, cfg, report=report,
            generator=seed_everything(5), resume=resume)
        return rows, states

    first, states = run()
    again, _ = run()
    assert len(first) == 3 and _rows(first) == _rows(again)
    resumed, _ = run(resume=states[0])
    assert _rows(resumed) == _rows(first[1:])
    assert first[0]["train_loss"] != pytest.approx(first[2]["train_loss"], rel=1e-9)
