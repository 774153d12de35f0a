"""The runs stored under a preset, and which one `run --resume` without --name continues.

Why by start time and not by name: run ids are timestamps only by default; with --name a
run is called anything ("zzz-old", "aaa-new"), so the name that sorts last is not the run
a person started last. Each run's meta.json records ``started_at`` (kept across resumes);
a run whose meta.json lacks it falls back to its directory's modification time. Listing
goes through the storage layer, so s3:// and gs:// roots work as local ones do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow.fs as pafs

from orchestrator.storage import RunFiles, join


@dataclass(frozen=True)
class RunStart:
    run_id: str
    started: dt.datetime | None   # UTC; None when neither meta.json nor the store says
    source: str                    # "started_at" (meta.json) or "mtime" (the directory's)

    def describe(self) -> str:
        if self.started is None:
            return "start time unknown"
        when = self.started.strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"started {when}" if self.source == "started_at" else f"last modified {when}"


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _started_at(files: RunFiles, run_id: str) -> dt.datetime | None:
    try:
        meta = files.read_json(run_id, "meta.json")
        return _utc(dt.datetime.fromisoformat(str(meta["started_at"])))
    except (KeyError, TypeError, ValueError, OSError):  # absent, null, unparsable or unreadable
        return None


def run_starts(storage: str, preset: str) -> list[RunStart]:
    """Every resumable run of ``preset`` (a directory with a meta.json), oldest first."""
    files = RunFiles(join(storage, preset))
    selector = pafs.FileSelector(files.root, allow_not_found=True)
    runs = []
    for info in files.fs.get_file_info(selector):
        name = info.base_name
        if name.startswith(".") or info.type != pafs.FileType.Directory:
            continue
        if not files.exists(name, "meta.json"):
            continue  # not a run `--resume` could continue (it would refuse it)
        started = _started_at(files, name)
        if started is not None:
            runs.append(RunStart(name, started, "started_at"))
        else:
            mtime = info.mtime  # None on object stores, whose "directories" have no time
            runs.append(RunStart(name, _utc(mtime) if mtime else None, "mtime"))
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(runs, key=lambda run: (run.started or oldest, run.run_id))


def latest_started_run(storage: str, preset: str) -> RunStart | None:
    """The run of ``preset`` started most recently, or None when there is none."""
    runs = run_starts(storage, preset)
    return runs[-1] if runs else None
