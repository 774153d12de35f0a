"""On a GPU, no training or evaluation step makes the host wait for the device (issue 17).

Each test runs a real trial (image with crop/flip, spectrogram with masks and noise, video
clips) through the real loop, with ``torch.cuda.set_sync_debug_mode("error")`` switched on
while steps run, so any synchronizing call inside a step (a blocking or pageable
host-to-device copy, ``.item()``, ``bool()``, ``int()`` or ``.tolist()`` of a device tensor,
indexing with a host index) raises instead of silently stalling. Only the loop's deliberate
syncs stay outside the checked region:

* ``train.divergence_check_every`` is larger than the steps run, so the periodic check never
  falls inside a checked step; the check after an epoch's *last* step (and the end of the
  epoch) does, so the last step of every epoch runs unchecked;
* an evaluation's first batch is fetched unchecked (its one-off set-up: the image data's
  index order is still a blocking copy, see trainables/data/splits.py), and its ``.item()``
  calls after the last batch are outside too.

Fetching every training batch (``next`` on the epoch's batches, where the data moves) and the
whole body of every other step (augmentation, forward, loss, backward, optimizer) are
checked. Skipped without CUDA.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ERROR, DEFAULT = "error", "default"


@pytest.fixture(autouse=True)
def sync_debug_mode_restored():
    """A failing step leaves the loop's generator suspended in "error" mode: reset it."""
    yield
    torch.cuda.set_sync_debug_mode(DEFAULT)


class StrictEpoch:
    """One epoch's training batches, handed out with sync debugging on: every fetch and every
    step but the last (the loop's end-of-epoch check follows it)."""

    def __init__(self, batches, checked: dict[str, int]) -> None:
        self.batches, self.checked = batches, checked

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        last = len(self.batches) - 1
        torch.cuda.set_sync_debug_mode(ERROR)
        try:
            for step, batch in enumerate(self.batches):
                if step == last:
                    torch.cuda.set_sync_debug_mode(DEFAULT)
                else:
                    self.checked["train steps"] += 1
                yield batch
        finally:
            torch.cuda.set_sync_debug_mode(DEFAULT)


def strict_evaluation(batches, checked: dict[str, int]):
    """Evaluation batches: the first fetched unchecked, then every step and fetch checked."""
    items = iter(batches)
    first = next(items, None)
    if first is None:
        return
    torch.cuda.set_sync_debug_mode(ERROR)
    try:
        yield first
        for batch in items:
            checked["eval steps"] += 1
            yield batch
    finally:
        torch.cuda.set_sync_debug_mode(DEFAULT)


def strict(monkeypatch, data_class) -> dict[str, int]:
    """Make every epoch and evaluation of ``data_class`` strict; count the checked steps."""
    checked = {"train steps": 0, "eval steps": 0}
    train_epoch, eval_batches = data_class.train_epoch, data_class.eval_batches
    monkeypatch.setattr(data_class, "train_epoch", lambda self, *args, **kwargs: StrictEpoch(
        train_epoch(self, *args, **kwargs), checked))
    monkeypatch.setattr(data_class, "eval_batches", lambda self, *args, **kwargs: (
        strict_evaluation(eval_batches(self, *args, **kwargs), checked)))
    return checked


TRAIN = {"epochs": 2, "batch_size": 16, "eval_batch_size": 16, "max_batches": 4,
         "divergence_check_every": 1000, "checkpoint_every": 1}


def _run_image(config: dict) -> list[dict]:
    from trainables.image import run_image_trial

    rows: list[dict] = []
    result = run_image_trial(config, report=lambda metrics, state: rows.append(metrics),
                             device="cuda")
    assert result.status == "ok", result
    return rows


def _cifar_config(tmp_path: Path) -> dict:
    from trainables.data.cifar import write_cifar

    root = tmp_path / "cifar"
    write_cifar(root, n_train=200, n_test=100)
    return {"data": {"name": "cifar10", "root": str(root), "val_size": 64},
            "model": {"name": "cifar_resnet", "depth": 8, "attention": "cbam"},
            # Per-channel black padding (CIFAR is normalised per channel) and flips.
            "augment": {"crop_padding": 4, "flip": True},
            "train": TRAIN}


def test_sync_debug_mode_catches_a_sync_here():
    # The mechanism itself, on this torch: a device read-back raises in "error" mode.
    torch.cuda.set_sync_debug_mode(ERROR)
    with pytest.raises(RuntimeError, match="synchroniz"):
        torch.ones(1, device="cuda").item()
    torch.cuda.set_sync_debug_mode(DEFAULT)


def test_image_steps_with_crop_and_flip_never_sync(tmp_path, monkeypatch):
    from trainables.data.splits import DeviceSplits

    checked = strict(monkeypatch, DeviceSplits)
    rows = _run_image(_cifar_config(tmp_path))
    assert len(rows) == 2
    assert checked["train steps"] == 2 * 3 and checked["eval steps"] > 0


def test_a_blocking_copy_in_a_step_is_caught(tmp_path, monkeypatch):
    # The check has teeth: the crop's draws sent the old way (a plain .to) fail the trial.
    from trainables.data import augment
    from trainables.data.splits import DeviceSplits

    strict(monkeypatch, DeviceSplits)
    monkeypatch.setattr(augment, "to_device_async", lambda host, device: host.to(device))
    with pytest.raises(RuntimeError, match="synchroniz"):
        _run_image(_cifar_config(tmp_path))
    torch.cuda.set_sync_debug_mode(DEFAULT)


def test_spectrogram_steps_with_masks_and_noise_never_sync(tmp_path, monkeypatch):
    from trainables.data.splits import DeviceSplits

    checked = strict(monkeypatch, DeviceSplits)
    rows = _run_image({
        "data": {"name": "fsdd", "split": "random", "height": 64, "width": 64,
                 "cache_dir": str(tmp_path)},
        "model": {"name": "spectro_lenet", "attention": "cbam", "image_size": 64},
        "augment": {"freq_mask": 8, "time_mask": 10, "mask_count": 2, "noise_std": 0.02},
        "train": TRAIN})
    assert len(rows) == 2
    assert checked["train steps"] == 2 * 3 and checked["eval steps"] > 0


def test_video_steps_never_sync(tmp_path, monkeypatch):
    from tests.conftest import needs_video_codecs

    needs_video_codecs()
    from trainables.data.video.clips import ClipData
    from trainables.data.video.synth import write_hmdb51
    from trainables.video import run_video_trial

    root = tmp_path / "hmdb51"
    write_hmdb51(root, classes=3, videos_per_class=8, seconds=1.0, fps=8, size=(32, 40), seed=5)
    checked = strict(monkeypatch, ClipData)
    rows: list[dict] = []
    result = run_video_trial(
        {"data": {"name": "hmdb51", "root": str(root), "frames": 4, "clip_seconds": 1.0,
                  "height": 32, "width": 40, "crop": 24, "flip": True, "val_fraction": 0.2,
                  "cache_dir": str(tmp_path / "cache")},
         "model": {"name": "r2plus1d_perceiver", "cnn_blocks": 4, "num_latents": 16,
                   "latent_dim": 64, "self_heads": 2, "self_head_dim": 16},
         "train": {**TRAIN, "batch_size": 3, "eval_batch_size": 2, "channels_last": True}},
        report=lambda metrics, state: rows.append(metrics), device="cuda")
    assert result.status == "ok" and len(rows) == 2
    assert checked["train steps"] == 2 * 3 and checked["eval steps"] > 0
