"""The one seam between Ray Tune and the Ray-agnostic trial code.

It turns ``loop.fit``'s ``report(metrics, state)`` into ``ray.tune.report`` with a
checkpoint directory, and a restored trial's checkpoint back into a resume state.

The best weights do not travel in every checkpoint: ``BestWeights`` writes them to the
trial's artifact folder once per improvement (``best_weights_epochNNNN.pt``), and the
checkpoint names that file instead. Ray keeps only the newest checkpoints
(``CheckpointConfig.num_to_keep``), so a file is deleted once no checkpoint Ray could
resume from names it.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from trainables.loop import Reporter

CHECKPOINT_FILE = "state.pt"
TRAINABLES = ("image", "audio", "video")
BEST_WEIGHTS_PREFIX = "best_weights_epoch"
BEST_WEIGHTS_SUFFIX = ".pt"


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


def best_weights_name(epoch: int) -> str:
    """The artifact holding the best weights found at 1-based ``epoch``."""
    return f"{BEST_WEIGHTS_PREFIX}{epoch:04d}{BEST_WEIGHTS_SUFFIX}"


def is_best_weights(name: str) -> bool:
    return name.startswith(BEST_WEIGHTS_PREFIX) and name.endswith(BEST_WEIGHTS_SUFFIX)


class TrialArtifacts:
    """One trial's artifact folder on a pyarrow filesystem (local disk or a bucket).

    Calling it writes a file (it is an ``ArtifactWriter``), to a dot-temp name first, so a
    reader never sees half a file. Workers write straight to the run's storage (multi-node
    runs need shared storage anyway).
    """

    def __init__(self, fs: Any, folder: str) -> None:
        self.fs, self.folder = fs, folder

    @classmethod
    def at(cls, run_location: str, trial_id: str) -> TrialArtifacts:
        """``<run>/artifacts/<trial_id>/``, for a local path or a URI."""
        import pyarrow.fs as pafs

        if "://" in run_location:
            fs, root = pafs.FileSystem.from_uri(run_location)
        else:
            fs, root = pafs.LocalFileSystem(), str(Path(run_location).expanduser().resolve())
        return cls(fs, f"{root}/artifacts/{trial_id}")

    def __call__(self, name: str, payload: bytes) -> None:
        self.fs.create_dir(self.folder, recursive=True)
        temp = f"{self.folder}/.{name}.tmp"
        with self.fs.open_output_stream(temp) as stream:
            stream.write(payload)
        self.fs.move(temp, f"{self.folder}/{name}")

    def read(self, name: str) -> bytes:
        with self.fs.open_input_stream(f"{self.folder}/{name}") as stream:
            return stream.read()

    def names(self) -> list[str]:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.folder, allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector))

    def delete(self, name: str) -> None:
        self.fs.delete_file(f"{self.folder}/{name}")


def artifact_writer(run_location: str, trial_id: str) -> TrialArtifacts:
    """``write(name, payload)`` into ``<run>/artifacts/<trial_id>/``, local or on a bucket."""
    return TrialArtifacts.at(run_location, trial_id)


class BestWeights:
    """A trial's best weights as an artifact written once per improvement.

    ``stow(state)``, before a checkpoint is saved: writes ``state["best_state"]`` unless the
    file of its best epoch is the one the last checkpoint named, and returns the state with
    ``best_state_file`` in its place. ``reported(name)``, once Ray has that checkpoint:
    deletes every best-weight file but the last ``keep`` that checkpoints named. Ray may
    resume from any of the ``checkpoints_kept`` checkpoints it keeps (its experiment
    snapshot can name the oldest), or from the one before the newest when the driver died
    before registering that: so ``keep`` is ``checkpoints_kept + 1``. Best epochs only
    grow, so the last ``keep`` names cover the last ``keep`` checkpoints.
    ``unstow(state)``, on resume: reads the weights back.
    """

    def __init__(self, files: TrialArtifacts, checkpoints_kept: int = 2) -> None:
        self.files, self.keep = files, checkpoints_kept + 1
        self.named: list[str] = []   # best-weight files the checkpoints named, newest last

    def stow(self, state: dict[str, Any]) -> dict[str, Any]:
        name = best_weights_name(state["best"]["epoch"])
        if self.named[-1:] != [name]:
            buffer = io.BytesIO()
            torch.save(state["best_state"], buffer)
            self.files(name, buffer.getvalue())
        stowed = {key: value for key, value in state.items() if key != "best_state"}
        stowed["best_state_file"] = name
        return stowed

    def reported(self, name: str) -> None:
        if self.named[-1:] == [name]:
            return
        self.named = [*self.named, name][-self.keep:]
        for other in self.files.names():
            if is_best_weights(other) and other not in self.named:
                self.files.delete(other)

    def unstow(self, state: dict[str, Any]) -> dict[str, Any]:
        name = state["best_state_file"]
        weights = torch.load(io.BytesIO(self.files.read(name)), map_location="cpu",
                             weights_only=True)
        self.named = [name]
        restored = {key: value for key, value in state.items() if key != "best_state_file"}
        restored["best_state"] = weights
        return restored


def read_checkpoint(directory: str | Path, best: BestWeights | None) -> dict[str, Any]:
    """The resume state in a checkpoint directory, with its best weights read back."""
    state = torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    if "best_state_file" in state:
        if best is None:
            raise ValueError("this checkpoint keeps its best weights in the run's artifacts, "
                             "but the trial was given no run location to read them from")
        state = best.unstow(state)
    return state


def checkpoint_reporter(send: Callable[[dict[str, Any], str | None], None],
                        best: BestWeights | None) -> Reporter:
    """``loop.fit``'s reporter: ``send(metrics, directory)`` with a directory holding the
    checkpoint (its best weights stowed by ``best``, when given), or None without one."""

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            send(metrics, None)
            return
        if best is not None:
            state = best.stow(state)
        with tempfile.TemporaryDirectory() as directory:
            torch.save(state, os.path.join(directory, CHECKPOINT_FILE))
            send(metrics, directory)
        if best is not None:
            best.reported(state["best_state_file"])

    return report


def tune_trainable(config: dict[str, Any], *, kind: str, cpus: float = 1.0,
                   run_location: str | None = None, checkpoints_kept: int = 2,
                   metric: str = "val_acc", gpus: float = 0.0) -> None:
    """Ray Tune function trainable for every modality (``kind`` picks the trial builder).

    ``checkpoints_kept``: the run's ``CheckpointConfig.num_to_keep``, which decides how many
    best-weight files the trial keeps while it runs (see ``BestWeights``). ``metric``: the
    run's, which every report must carry (the error report too). ``gpus``: the trial's share
    of a GPU, which a CUDA out-of-memory error names.

    An exception of the trial's own code is reported (``status="error"``, its traceback in
    the trial's artifacts as error.txt) before it propagates: the driver's RetryPolicy reads
    that report to tell it from a lost worker, which is the only failure worth a retry.
    """
    import ray
    from ray import tune

    artifacts = None
    try:
        # Several trials share the machine's cores; let each use only the ones it reserved.
        torch.set_num_threads(max(1, int(cpus)))
        device = trial_device(str(config.get("device", "auto")), ray.get_gpu_ids())

        best = None
        if run_location is not None:
            artifacts = artifact_writer(run_location, tune.get_context().get_trial_id())
            best = BestWeights(artifacts, checkpoints_kept)

        resume = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                resume = read_checkpoint(directory, best)

        inject_at = _injected_error_epoch()

        def send(metrics: dict[str, Any], directory: str | None) -> None:
            if inject_at is not None and metrics.get("epoch") == inject_at:
                raise RuntimeError(f"injected error at epoch {inject_at} ({INJECT_ERROR_ENV})")
            if directory is None:
                tune.report(metrics)
            else:
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

        _run(kind)(config, report=checkpoint_reporter(send, best), resume=resume,
                   device=device, artifacts=artifacts)
    except Exception as err:
        tune.report(own_error_report(err, metric, artifacts, gpus=gpus))
        raise


def trial_device(requested: str, gpu_ids: list) -> str:
    """The device a trial trains on: the one its config names (``device=cpu`` runs a
    GPU-holding trial on CPU on purpose), else the GPU Ray gave it, else the CPU. A trial
    given a GPU that sees no CUDA device fails (``resolve_device``), never runs on CPU."""
    if requested in ("cpu", "cuda"):
        return requested
    return "cuda" if gpu_ids else "cpu"


# Testing hook: the trial's code raises just before it would report this epoch, as a bug
# would. The retry tests use it; nothing else sets it.
INJECT_ERROR_ENV = "ORCHESTRATOR_INJECT_ERROR_AT_EPOCH"


def _injected_error_epoch() -> int | None:
    value = os.environ.get(INJECT_ERROR_ENV)
    return int(value) if value else None


def own_error_report(err: BaseException, metric: str,
                     artifacts: Callable[[str, bytes], None] | None,
                     gpus: float = 0.0) -> dict[str, Any]:
    """The last report of a trial whose code raised ``err``: the row says why in one line,
    error.txt in its artifacts keeps the traceback.

    Out of GPU memory with a fractional GPU is the packing's fault more often than the
    trial's (Ray's fractions do not limit memory): the line says how many trials shared it.
    """
    import traceback

    if artifacts is not None:
        text = "".join(traceback.format_exception(err))
        with contextlib.suppress(OSError):  # the report below still says what happened
            artifacts("error.txt", text.encode())
    first_line = (str(err).strip().splitlines() or [""])[0]
    line = f"{type(err).__name__}: {first_line}" if first_line else type(err).__name__
    if isinstance(err, torch.cuda.OutOfMemoryError) and 0 < gpus < 1:
        line = (f"CUDA out of memory at {gpus:g} GPU per trial (up to {math.floor(1 / gpus)} "
                "trials share a GPU, and Ray does not split its memory): pack fewer with a "
                "larger --gpus-per-trial (or auto), or lower train.batch_size; " + line)
    return {metric: float("nan"), "status": "error", "stopped_by": "error", "error": line[:500]}
