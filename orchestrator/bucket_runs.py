"""A run in a bucket, summarised and reported exactly like a run on local disk.

Why a local copy of a few files and not a second reader: the analysis reads a run from a
directory (meta.json, trials.parquet, epochs/, the attention maps under artifacts/), and
one reader means a bucket run and a local run cannot report differently. What the report
reads is small (kilobytes per trial; the maps a few hundred kB): checkpoints and weights,
the bulk of a run, are never fetched. The page is then written into the run beside its
results, where a colleague who opens the bucket finds it.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

from analysis.schema import ARTIFACTS_DIR, EPOCHS_DIR, MAPS_FILE, META_FILE, TRIALS_FILE
from orchestrator.errors import UserError
from orchestrator.storage import RunFiles, base_name, first_line, is_uri, join


@contextlib.contextmanager
def readable_run(location: str) -> Iterator[Path]:
    """A local directory holding what the analysis reads of the run at ``location``.

    A local run is its own directory; a bucket run is copied into a temporary one (named
    like the run, so titles match), removed when the block ends.
    """
    if not is_uri(location):
        yield Path(location)
        return
    with tempfile.TemporaryDirectory(prefix="orchestrator-run-") as temp:
        local = Path(temp) / base_name(location)
        try:
            _copy_report_inputs(RunFiles(location, quick=True), local)  # seconds, not minutes
        except UserError:
            raise
        except Exception as err:  # pyarrow raises OSError, ValueError... per store and case
            raise UserError(f"cannot read run {location}: {first_line(err)}; check the URI, "
                            "the credentials and the endpoint (AWS_ENDPOINT_URL)") from None
        yield local


def publish(local_file: Path, location: str, name: str) -> str:
    """Write ``local_file`` into the run at ``location`` as ``name``; return its address."""
    if not is_uri(location):
        return str(Path(location) / name)
    try:
        RunFiles(location).write_bytes(local_file.read_bytes(), name)
    except Exception as err:
        raise UserError(f"cannot write {name} into {location}: {first_line(err)}") from None
    return join(location, name)


def _copy_report_inputs(files: RunFiles, local: Path) -> None:
    if not (files.exists(META_FILE) or files.exists(TRIALS_FILE)):
        raise UserError(f"run dir not found: {files.location} (a run dir must contain "
                        f"{META_FILE}, {TRIALS_FILE} and {EPOCHS_DIR}/<trial>.parquet)")
    local.mkdir(parents=True)
    wanted = [META_FILE, TRIALS_FILE]
    wanted += [f"{EPOCHS_DIR}/{name}" for name in _files_in(files, EPOCHS_DIR)
               if name.endswith(".parquet")]
    wanted += [f"{ARTIFACTS_DIR}/{trial}/{MAPS_FILE}" for trial in files.list_dir(ARTIFACTS_DIR)
               if not trial.startswith(".")]
    for relative in wanted:
        if not files.exists(relative):
            continue  # a trial without maps, or a run that has not written trials yet
        target = local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with files.fs.open_input_stream(files.path(relative)) as stream:
            target.write_bytes(stream.read())


def _files_in(files: RunFiles, folder: str) -> list[str]:
    selector = pafs.FileSelector(files.path(folder), allow_not_found=True)
    return [info.base_name for info in files.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and not info.base_name.startswith(".")]
