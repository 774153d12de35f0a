"""The one seam between Ray Tune and the Ray-agnostic trial code.

It turns ``loop.fit``'s ``report(metrics, state)`` into ``ray.tune.report`` with a
checkpoint directory, and a restored trial's checkpoint back into a resume state.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "state.pt"
TRAINABLES = ("image", "audio", "video")


def _run(kind: str):
    # Audio trials are image trials: the dataset turns recordings into spectrogram images
    # (trainables.data.fsdd), so the same device-resident loop and artifacts serve both.
    if kind in ("image", "audio"):
        from trainables.image import run_image_trial

        return run_image_trial
    if kind == "video":
        from trainables.video import run_video_trial

        return run_video_trial
    raise ValueError(f"unknown trainable {kind!r}; choose from {', '.join(TRAINABLES)}")


def artifact_writer(run_location: str, trial_id: str):
    """``write(name, payload)`` into ``<run>/artifacts/<trial_id>/``, local or on a bucket.

    Workers write straight to the run's storage (multi-node runs need shared storage anyway),
    to a dot-temp name first, so the report never reads half a file.
    """
    import pyarrow.fs as pafs

    if "://" in run_location:
        fs, root = pafs.FileSystem.from_uri(run_location)
    else:
        fs, root = pafs.LocalFileSystem(), str(Path(run_location).expanduser().resolve())
    folder = f"{root}/artifacts/{trial_id}"

    def write(name: str, payload: bytes) -> None:
        fs.create_dir(folder, recursive=True)
        temp = f"{folder}/.{name}.tmp"
        with fs.open_output_stream(temp) as stream:
            stream.write(payload)
        fs.move(temp, f"{folder}/{name}")

    return write


def tune_trainable(config: dict[str, Any], *, kind: str, cpus: float = 1.0,
                   run_location: str | None = None) -> None:
    """Ray Tune function trainable for every modality (``kind`` picks the trial builder)."""
    import ray
    from ray import tune

    # Several trials share the machine's cores; let each use only the ones it reserved.
    torch.set_num_threads(max(1, int(cpus)))
    device = "cuda" if ray.get_gpu_ids() else "cpu"

    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu",
                                weights_only=False)

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            torch.save(state, os.path.join(directory, CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    artifacts = None
    if run_location is not None:
        artifacts = artifact_writer(run_location, tune.get_context().get_trial_id())
    _run(kind)(config, report=report, resume=resume, device=device, artifacts=artifacts)
