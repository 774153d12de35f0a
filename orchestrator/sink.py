"""The driver-side Tune callback that writes the Parquet results of a run.

It lives on the driver, not in the trials, so one writer owns each file (no races between
trials) and the files are complete even for trials that crashed before reporting. It keeps
the rows in memory keyed by (trial_id, epoch) and rewrites whole files, which makes a
resumed run neither lose nor duplicate rows: a re-reported epoch replaces its old row.

A trial's row describes its latest attempt. ``--resume`` reruns errored trials from their
last checkpoint, so a trial can report again after its row says how it ended; the fields
that only said how that attempt ended are then cleared (see ``_ENDING_FIELDS``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import polars as pl
from ray.tune import Callback

from analysis.schema import CONFIG_PREFIX, EPOCH_COLUMNS, EPOCHS_DIR, TRIAL_COLUMNS, TRIALS_FILE
from orchestrator.space import flatten
from orchestrator.storage import RunFiles

# Metrics copied from a trial's latest report into its trials.parquet row.
_FROM_RESULT = ("status", "error", "stopped_by", "params", "best_epoch", "best_val_acc",
                "best_val_loss", "test_acc", "test_loss", "train_time_s", "diverged_epoch",
                "diverged_step", "data_note")

# Fields that say how one attempt at a trial ended: the trial's last report (test metrics,
# stopped_by, a divergence) or the sink itself (an error, a scheduler's stop) sets them, and
# running reports never do. Every report clears them before it sets its own, so they are
# always the latest report's, or the sink's mark of an end that came after it. That matters
# when an ended trial reports again (``--resume`` reran it after an error): kept, a rerun that
# finishes "ok" would still carry the crash's error and stopped_by="error", and one still
# running would show the old attempt's test_acc. The rest of the row still holds and stays:
# the config columns, and what every report carries again from the checkpoint the rerun
# continues (best_* so far, params, train_time_s, data_note, epochs_run and final_val_acc).
_ENDING_FIELDS = ("error", "stopped_by", "test_acc", "test_loss", "diverged_epoch",
                  "diverged_step")


def _finite(value: Any) -> Any:
    """NaN and inf become null: they mean 'not measured', and nulls keep means honest."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def result_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    """The trials.parquet fields one result sets (a later result overrides an earlier one).

    The searcher judges seeds on these same values, so its verdicts are the report's.
    """
    return {key: _finite(result[key]) for key in _FROM_RESULT if key in result}


class ParquetSink(Callback):
    """Appends epoch rows to ``epochs/<trial>.parquet`` and keeps ``trials.parquet`` current."""

    def __init__(self, run_location: str, label_of: Callable[[Mapping[str, Any]], str],
                 min_write_interval_s: float = 2.0) -> None:
        self.run_location = run_location
        self.label_of = label_of
        self.min_write_interval_s = min_write_interval_s
        self._loaded = False

    # Tune pickles its callbacks into the experiment state; keep only the settings there.
    def __getstate__(self) -> dict[str, Any]:
        return {"run_location": self.run_location, "label_of": self.label_of,
                "min_write_interval_s": self.min_write_interval_s, "_loaded": False}

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._files = RunFiles(self.run_location)
        self._trials: dict[str, dict[str, Any]] = {}
        self._epochs: dict[str, dict[int, dict[str, Any]]] = {}
        # Never written yet: the first write is due whatever the monotonic clock's origin.
        self._last_write = -math.inf
        if self._files.exists(TRIALS_FILE):
            for row in self._files.read_parquet(TRIALS_FILE).to_dicts():
                self._trials[row["trial_id"]] = row
        for name in self._files.list_dir(EPOCHS_DIR):
            if name.startswith(".") or not name.endswith(".parquet"):
                continue
            rows = self._files.read_parquet(EPOCHS_DIR, name).to_dicts()
            if rows:
                self._epochs[rows[0]["trial_id"]] = {r["epoch"]: r for r in rows}
        self._loaded = True

    def setup(self, **info: Any) -> None:
        self._ensure_loaded()

    # ---- trial row ---------------------------------------------------------------------
    def _trial_row(self, trial) -> dict[str, Any]:
        row = self._trials.get(trial.trial_id)
        if row is None:
            row = {column: None for column in TRIAL_COLUMNS}
            row.update(trial_id=trial.trial_id, status="running", epochs_run=0)
            self._trials[trial.trial_id] = row
        # The config is re-read every time: a restored trial keeps its id and its config.
        row["variant"] = self.label_of(trial.config)
        row["seed"] = trial.config.get("seed")
        row["stage"] = trial.config.get("stage", "single")
        row["draw"] = trial.config.get("draw", 0)
        for key, value in flatten(trial.config).items():
            row[CONFIG_PREFIX + key] = value
        return row

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        self._ensure_loaded()
        row = self._trial_row(trial)
        # A report says how the trial stands now: it ends nothing it does not say it ends, and
        # after an ended attempt it starts a new one (see _ENDING_FIELDS).
        row.update(dict.fromkeys(_ENDING_FIELDS), status="running")
        epoch = result.get("epoch")
        if epoch is not None:
            epoch_row = {column: _finite(result.get(column)) for column in EPOCH_COLUMNS}
            epoch_row["trial_id"] = trial.trial_id
            self._epochs.setdefault(trial.trial_id, {})[int(epoch)] = epoch_row
            self._write_epochs(trial.trial_id)
            row["epochs_run"] = int(epoch)
            row["final_val_acc"] = _finite(result.get("val_acc"))
        row.update(result_fields(result))
        self._write_trials(force=row["status"] != "running")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._ensure_loaded()
        row = self._trial_row(trial)
        if row["status"] == "running":
            # The trial returned without a final report of its own: a scheduler stopped it.
            row["status"], row["stopped_by"] = "early_stopped", "scheduler"
        self._write_trials(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._ensure_loaded()
        row = self._trial_row(trial)
        row.update(status="error", **error_fields(trial, row))
        self._write_trials(force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._ensure_loaded()
        self._write_trials(force=True)

    # ---- files -------------------------------------------------------------------------
    def _write_epochs(self, trial_id: str) -> None:
        rows = [self._epochs[trial_id][e] for e in sorted(self._epochs[trial_id])]
        frame = pl.DataFrame(rows, schema=_epoch_schema())
        self._files.write_parquet(frame, EPOCHS_DIR, f"{trial_id}.parquet")

    def _write_trials(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < self.min_write_interval_s:
            return
        self._last_write = now
        self._files.write_parquet(trials_frame(list(self._trials.values())), TRIALS_FILE)


def _epoch_schema() -> dict[str, Any]:
    schema: dict[str, Any] = {column: pl.Float64 for column in EPOCH_COLUMNS}
    schema.update(trial_id=pl.String, epoch=pl.Int64)
    return schema


def trials_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows to a frame with stable types; config columns of mixed types become text."""
    columns = list(TRIAL_COLUMNS) + sorted({k for r in rows for k in r if k not in TRIAL_COLUMNS})
    data = {c: [r.get(c) for r in rows] for c in columns}
    types = {"trial_id": pl.String, "variant": pl.String, "status": pl.String, "error": pl.String,
             "stopped_by": pl.String, "seed": pl.Int64, "stage": pl.String, "draw": pl.Int64, "params": pl.Int64, "epochs_run": pl.Int64,
             "best_epoch": pl.Int64, "diverged_epoch": pl.Int64, "diverged_step": pl.Int64,
             "data_note": pl.String}
    series = []
    for column in columns:
        values = data[column]
        if column in types:
            series.append(pl.Series(column, values, dtype=types[column]))
        elif column in TRIAL_COLUMNS:
            series.append(pl.Series(column, values, dtype=pl.Float64))
        else:
            try:
                series.append(pl.Series(column, values, strict=True))
            except (TypeError, pl.exceptions.PolarsError):
                series.append(pl.Series(column, [None if v is None else str(v) for v in values],
                                        dtype=pl.String))
    return pl.DataFrame(series)


def error_fields(trial, last: Mapping[str, Any]) -> dict[str, Any]:
    """``error`` and ``stopped_by`` of a trial Tune gave up on.

    Its own code raised when its last report says so (``status="error"``: the trainable
    reports the exception before raising it); otherwise Tune lost its process, and Ray's
    message about that is a page of raylet details, so the row gets its gist.
    """
    from orchestrator.retries import failure_cause, trial_error_text, was_lost

    if last.get("status") == "error":
        return {"stopped_by": "error", "error": last.get("error") or _error_line(trial)}
    if not was_lost(trial):
        return {"stopped_by": "error", "error": _error_line(trial)}

    attempts = trial.num_failures
    return {"stopped_by": "lost",
            "error": f"lost its worker ({failure_cause(trial_error_text(trial))}) "
                     f"{attempts} time(s); no retries left"}


def _error_line(trial) -> str:
    """The last line of the trial's traceback: the exception and its message."""
    try:
        text = trial.get_error()
        text = str(text) if text is not None else ""
    except Exception:
        text = ""
    if not text and trial.error_file:
        try:
            with open(trial.error_file) as f:
                text = f.read()
        except OSError:
            text = ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial failed (no error message recorded)"
