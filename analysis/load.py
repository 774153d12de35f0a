"""Read one run directory into memory.

The sink writes a run as several files (see `analysis.schema`); every reader goes through
`load_run` so that the quirks of the on-disk layout (dot-temp files, epoch files written by
different versions, runs that never finished an epoch) are handled in one place.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from analysis.schema import EPOCH_COLUMNS, EPOCHS_DIR, META_FILE, TRIALS_FILE

__all__ = ["EPOCH_DTYPES", "TRIAL_DTYPES", "Run", "load_run"]

# Column types of the contract, used to add columns an older writer did not produce and to
# build correctly typed empty frames, so downstream code never checks for a column's presence.
# tests/test_analysis.py checks that they list exactly the schema's columns, in order.
TRIAL_DTYPES: dict[str, pl.DataType] = {
    "trial_id": pl.String(),
    "variant": pl.String(),
    "seed": pl.Int64(),
    "stage": pl.String(),
    "draw": pl.Int64(),
    "status": pl.String(),
    "error": pl.String(),
    "stopped_by": pl.String(),
    "params": pl.Int64(),
    "epochs_run": pl.Int64(),
    "best_epoch": pl.Int64(),
    "best_val_acc": pl.Float64(),
    "best_val_loss": pl.Float64(),
    "final_val_acc": pl.Float64(),
    "test_acc": pl.Float64(),
    "test_loss": pl.Float64(),
    "train_time_s": pl.Float64(),
    "diverged_epoch": pl.Int64(),
    "diverged_step": pl.Int64(),
    "data_note": pl.String(),
}
EPOCH_DTYPES: dict[str, pl.DataType] = {
    "trial_id": pl.String(),
    "epoch": pl.Int64(),
    **{name: pl.Float64() for name in EPOCH_COLUMNS if name not in ("trial_id", "epoch")},
}

_LAYOUT = f"a run dir must contain {META_FILE}, {TRIALS_FILE} and {EPOCHS_DIR}/<trial>.parquet"


@dataclass(frozen=True, eq=False)  # eq=False: DataFrame equality is element-wise, not a bool
class Run:
    """One run as read from disk: its metadata, one row per trial and one row per epoch."""

    meta: dict[str, Any]
    trials: pl.DataFrame               # the compared rows: one per (arm, seed)
    epochs: pl.DataFrame               # epochs of those trials
    # The tuning stage's candidates and their epochs (empty when nothing was tuned): the
    # report shows how each arm was tuned, and nothing else reads them.
    tuning: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TRIAL_DTYPES))
    tuning_epochs: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=EPOCH_DTYPES))


def load_run(run_dir: Path) -> Run:
    """Read `run_dir` (meta.json, trials.parquet, epochs/*.parquet) into a `Run`.

    A missing meta.json reads as `{}` so that a run whose metadata was lost still reports;
    a missing trials.parquet reads as no trials when meta.json is there (a sweep that has not
    finished a trial yet), and is an error otherwise (not a run dir at all).
    Epoch files are concatenated diagonally, so a column absent from some files is null
    there; every contract column is present (typed, possibly all null) in both frames.
    Files whose name starts with "." are the sink's in-flight temp files and are skipped.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run dir not found: {run_dir} ({_LAYOUT})")
    trials_path = run_dir / TRIALS_FILE
    if trials_path.is_file():
        trials = _with_contract_columns(_read_whole(trials_path), TRIAL_DTYPES)
    elif (run_dir / META_FILE).is_file():
        # A sweep that has started but finished no trial yet (or died before its first):
        # still a run, reported as having no trials.
        trials = pl.DataFrame(schema=TRIAL_DTYPES)
    else:
        raise FileNotFoundError(f"{TRIALS_FILE} not found: {trials_path} ({_LAYOUT})")
    # Rows written before stages existed are single-stage rows.
    trials = trials.with_columns(pl.col("stage").fill_null("single"),
                                 pl.col("draw").fill_null(0))
    epochs = _read_epochs(run_dir)
    tune = pl.col("stage") == "tune"
    tuning, trials = trials.filter(tune), trials.filter(~tune)
    tuning_ids = tuning["trial_id"]
    return Run(meta=_read_meta(run_dir / META_FILE), trials=trials,
               epochs=epochs.filter(~pl.col("trial_id").is_in(tuning_ids.implode())),
               tuning=tuning,
               tuning_epochs=epochs.filter(pl.col("trial_id").is_in(tuning_ids.implode())))


def _read_meta(path: Path) -> dict[str, Any]:
    """Parse meta.json, naming the file when it is not a JSON object."""
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    return meta


def _read_whole(path: Path) -> pl.DataFrame:
    """One Parquet file from one read of its bytes.

    A live sweep replaces its files by rename; a reader that opens a path twice (footer,
    then pages, as Polars does) can get the footer of one version and the pages of the
    next ("page header reported the wrong page size"). The bytes of one open are one
    version.
    """
    return pl.read_parquet(io.BytesIO(path.read_bytes()))


def _read_epochs(run_dir: Path) -> pl.DataFrame:
    """Concatenate epochs/*.parquet, sorted by (trial_id, epoch) for stable plots and tests."""
    epochs_dir = run_dir / EPOCHS_DIR
    paths = (
        sorted(p for p in epochs_dir.glob("*.parquet") if not p.name.startswith("."))
        if epochs_dir.is_dir()
        else []
    )
    # "relaxed" unifies schemas across files (a column absent from some, an int in one and
    # a float in another: files written by different versions, or a trial still being
    # written).
    frames = [_read_whole(p) for p in paths if p.stat().st_size > 0]
    if not frames:
        return pl.DataFrame(schema=EPOCH_DTYPES)
    epochs = pl.concat(frames, how="diagonal_relaxed")
    if epochs.width == 0:
        return pl.DataFrame(schema=EPOCH_DTYPES)
    epochs = _with_contract_columns(epochs, EPOCH_DTYPES)
    return epochs.sort("trial_id", "epoch", nulls_last=True)


def load_runs(run_dirs: Sequence[Path]) -> tuple[list[Run], pl.DataFrame, pl.DataFrame]:
    """Several runs, plus their trials and epochs as two tidy frames with a ``run`` column.

    Each run keeps its own frames (statistics are per run); the combined frames have every
    run's columns (diagonal concat: a `cfg.*` key one preset lacks is null in its rows), so
    runs of different presets or versions still stack.
    """
    runs = [load_run(Path(d)) for d in run_dirs]
    labels = [str(run.meta.get("run_id") or Path(d).name) for run, d in zip(runs, run_dirs,
                                                                            strict=True)]
    trials = pl.concat([r.trials.lazy().with_columns(pl.lit(label).alias("run"))
                        for r, label in zip(runs, labels, strict=True)], how="diagonal_relaxed")
    epochs = pl.concat([r.epochs.lazy().with_columns(pl.lit(label).alias("run"))
                        for r, label in zip(runs, labels, strict=True)], how="diagonal_relaxed")
    return runs, trials.collect(), epochs.collect()


def _with_contract_columns(df: pl.DataFrame, dtypes: dict[str, pl.DataType]) -> pl.DataFrame:
    """Add missing contract columns as typed nulls and cast present ones to the contract type.

    Contract columns come first in contract order; extra columns (e.g. "cfg.*") follow as
    written. A column that cannot be cast (e.g. text in a numeric column) raises, because
    that is a writer bug a report should not paper over.
    """
    columns = [
        pl.col(name).cast(dtype) if name in df.columns else pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in dtypes.items()
    ]
    extra = [name for name in df.columns if name not in dtypes]
    return df.select(*columns, *extra)
