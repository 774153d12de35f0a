"""After a run: delete the checkpoints no ``--resume`` can use, and (unless asked to keep
them) the best weights of the trials that finished.

Ray keeps each trial's newest checkpoint in ``<run>/<trial dir>/checkpoint_NNNNNN/`` (the
trial directory is named ``<trainable>_<trial_id>_<tag>_<date>``), and the trial writes its
best weights to ``<run>/artifacts/<trial_id>/best_weights_epochNNNN.pt``. A trial whose
status in ``trials.parquet`` is ``ok`` or ``early_stopped`` is over: ``--resume`` never
runs it again, so its checkpoint is dead weight (hundreds of MiB for a VGG or a video
model). Errored, interrupted and running trials keep everything: their checkpoints and
best weights are what ``--resume`` continues them from. So do diverged trials (a recorded
outcome that nothing resumes, but their last weights before the loss blew up are what
one would inspect).

Works on any pyarrow filesystem, so a run on ``s3://`` or ``gs://`` is cleaned in place.
"""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs

from analysis.schema import ARTIFACTS_DIR, TRIALS_FILE
from orchestrator.storage import resolve
from trainables.tune_adapter import is_best_weights

FINISHED = ("ok", "early_stopped")
CHECKPOINT_PREFIX = "checkpoint_"


def clean_checkpoints(run_location: str, *, keep_best: bool) -> dict[str, int]:
    """Delete finished trials' Ray checkpoints and, unless ``keep_best``, their best weights.

    With ``keep_best`` a finished trial keeps one best-weight file, its best epoch's (older
    ones a trial could not delete as it ended go). Returns counts for one line of output:
    ``trials`` (finished trials cleaned), ``checkpoints`` (checkpoint directories removed),
    ``best_weights`` (best-weight files removed), ``files`` (all files removed) and ``bytes``.
    """
    fs, root = resolve(run_location)
    return clean_run(fs, root, keep_best=keep_best)


def clean_run(fs: pafs.FileSystem, root: str, *, keep_best: bool) -> dict[str, int]:
    """``clean_checkpoints`` on a filesystem and the run directory's path within it."""
    removed = {"trials": 0, "checkpoints": 0, "best_weights": 0, "files": 0, "bytes": 0}
    statuses = _statuses(fs, root)
    finished = sorted(t for t, status in statuses.items() if status in FINISHED)
    for trial_id, folder in _trial_dirs(fs, root, list(statuses)).items():
        if trial_id not in finished:
            continue
        for entry in _list(fs, folder):
            if entry.type == pafs.FileType.Directory and entry.base_name.startswith(
                    CHECKPOINT_PREFIX):
                files = [f for f in _list(fs, entry.path, recursive=True)
                         if f.type == pafs.FileType.File]
                fs.delete_dir(entry.path)
                removed["checkpoints"] += 1
                removed["files"] += len(files)
                removed["bytes"] += sum(f.size or 0 for f in files)
    for trial_id in finished:
        folder = f"{root}/{ARTIFACTS_DIR}/{trial_id}"
        entries = [e for e in _list(fs, folder) if e.type == pafs.FileType.File]
        best = sorted(e.base_name for e in entries if is_best_weights(e.base_name))
        keep = set(best[-1:]) if keep_best else set()
        for entry in entries:
            name = entry.base_name
            # A write that died before its rename leaves a dot-temp file of the same name.
            written = name[1:-len(".tmp")] if name.startswith(".") and name.endswith(".tmp") else name
            if is_best_weights(written) and name not in keep:
                fs.delete_file(entry.path)
                removed["best_weights"] += 1
                removed["files"] += 1
                removed["bytes"] += entry.size or 0
    removed["trials"] = len(finished)
    return removed


def describe(removed: dict[str, int]) -> str:
    """One line for the CLI, e.g. ``removed 12 checkpoints and 12 best-weight files of 12
    finished trials: 43.4 MB``."""
    size = removed["bytes"]
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            break
        size /= 1000
    amount = f"{removed['bytes']} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
    return (f"removed {removed['checkpoints']} checkpoint(s) and {removed['best_weights']} "
            f"best-weight file(s) of {removed['trials']} finished trial(s): {amount}")


def _statuses(fs: pafs.FileSystem, root: str) -> dict[str, str]:
    """trial_id -> status from trials.parquet; empty when the run wrote none."""
    import pyarrow.parquet as pq

    path = f"{root}/{TRIALS_FILE}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return {}
    table = pq.read_table(path, filesystem=fs, columns=["trial_id", "status"])
    return dict(zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist(),
                    strict=True))


def _trial_dirs(fs: pafs.FileSystem, root: str, trial_ids: list[str]) -> dict[str, str]:
    """trial_id -> its Ray trial directory, for directories naming exactly one known trial."""
    found: dict[str, str] = {}
    for entry in _list(fs, root):
        if entry.type != pafs.FileType.Directory:
            continue
        named = [t for t in trial_ids if f"_{t}_" in entry.base_name]
        if len(named) == 1:
            found[named[0]] = entry.path
    return found


def _list(fs: pafs.FileSystem, path: str, recursive: bool = False) -> list[Any]:
    return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=recursive))
