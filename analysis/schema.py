"""The on-disk result contract shared by the writer (orchestrator.sink) and every reader.

Kept in one place so the sink and the report cannot drift apart: a column renamed here is
renamed for both sides at once.

    <storage>/<experiment>/<run_id>/
      meta.json               see META_KEYS
      trials.parquet          one row per trial: TRIAL_COLUMNS + "cfg.<dotted.key>" columns
      epochs/<trial>.parquet  one row per (trial, epoch): EPOCH_COLUMNS
      artifacts/<trial>/      per-trial files, written by the trial itself at its end:
        maps.npz              fixed validation images with Grad-CAM and attention maps
                              (keys documented in trainables/explain.py)
        confusion.json        {"split", "matrix": [[true x predicted]], "class_names"}
      report.html
"""

from __future__ import annotations

TRIALS_FILE = "trials.parquet"
EPOCHS_DIR = "epochs"
META_FILE = "meta.json"
ARTIFACTS_DIR = "artifacts"
MAPS_FILE = "maps.npz"              # same names as trainables.explain writes
CONFUSION_FILE = "confusion.json"
REPORT_FILE = "report.html"

# Prefix of the flattened trial config columns in trials.parquet (e.g. "cfg.model.attention").
CONFIG_PREFIX = "cfg."

# Protocol stages. Statistics compare arms on COMPARED_STAGES rows only, one per (arm, seed);
# tuning candidates are never averaged as if they were seeds.
STAGES = ("single", "tune", "replicate")
COMPARED_STAGES = ("single", "replicate")

# Trial outcomes. "running" only appears while a sweep is in flight or was interrupted.
STATUSES = ("ok", "early_stopped", "diverged", "error", "running")

# trials.parquet: one row per trial. Types in comments; metrics are null where never reached.
TRIAL_COLUMNS = (
    "trial_id",        # str, Ray's trial id, unique within the run
    "variant",         # str, the ablation label (e.g. "se"); seeds of one variant share it
    "seed",            # int
    "stage",           # str: "single" (no tuning), "tune" (a candidate) or "replicate" (the
                       #   chosen config on a fresh seed); comparisons use single/replicate
    "draw",            # int, the tuning candidate's index within its arm (replicates: the
                       #   chosen one's; single: 0)
    "status",          # str, one of STATUSES
    "error",           # str | null, one line: exception text, or where a loss went non-finite
    "stopped_by",      # str | null: "scheduler" | "patience" | "divergence" | "error" (its
                       # code raised) | "lost" (its worker or node died, retries used up) | null
    "params",          # int, trainable parameter count
    "epochs_run",      # int
    "best_epoch",      # int | null, epoch of the best val metric (1-based)
    "best_val_acc",    # float | null
    "best_val_loss",   # float | null
    "final_val_acc",   # float | null, at the last epoch run
    "test_acc",        # float | null, best checkpoint on the test split, where one exists
    "test_loss",       # float | null
    "train_time_s",    # float, sum of epoch times (excludes data loading and evaluation of test)
    "diverged_epoch",  # int | null, 1-based epoch in which the loss went non-finite
    "diverged_step",   # int | null, 1-based step within that epoch (first check that saw it)
    "data_note",       # str | null, what the data loader used and skipped (one line)
)

# epochs/<trial>.parquet: one row per epoch; (trial_id, epoch) is the key.
EPOCH_COLUMNS = (
    "trial_id",        # str
    "epoch",           # int, 1-based
    "train_loss",      # float
    "train_acc",       # float
    "val_loss",        # float
    "val_acc",         # float
    "lr",              # float, learning rate used during this epoch
    "epoch_time_s",    # float, training time of this epoch (excludes validation)
    "samples_per_s",   # float, training throughput
    "gpu_mem_mb",      # float, peak accelerator memory this epoch (0.0 on CPU)
)

# meta.json keys.
META_KEYS = (
    "run_id", "preset", "source", "trainable", "metric", "mode", "baseline_variant",
    "source_url",      # the cited document's own address, or null when it has none
    "reported",        # {variant: {"test_acc": float, "train_time_s": float, ...}}
    "overrides",       # ["key.path=value", ...] as given on the command line
    "cli",             # the full argv
    "git_revision", "versions", "hardware", "started_at", "ended_at", "smoke",
)
