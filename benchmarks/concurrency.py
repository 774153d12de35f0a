"""Concurrency gain of a sweep: the sum of its trials' training times over its wall time.

Reads a finished run directory (e.g. from `python -m orchestrator run mnist_attention`)
and the meta.json timestamps; both numbers come from the same run.

    .venv/bin/python benchmarks/concurrency.py runs/mnist_attention/<run_id>
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import polars as pl


def main(run_dir: Path) -> None:
    meta = json.loads((run_dir / "meta.json").read_text())
    trials = pl.read_parquet(run_dir / "trials.parquet")
    wall = (dt.datetime.fromisoformat(meta["ended_at"]) - dt.datetime.fromisoformat(meta["started_at"])).total_seconds()
    busy = trials["train_time_s"].sum()
    print(f"trials: {trials.height}, sum of trial train times: {busy:.1f} s, sweep wall time: {wall:.1f} s")
    print(f"concurrency gain (sum of trial times / wall): {busy / wall:.2f}")
    per_variant = (trials.group_by("variant").agg(
        pl.len().alias("n"), pl.col("test_acc").mean().alias("test_acc_mean"),
        pl.col("test_acc").std().alias("test_acc_std"), pl.col("train_time_s").mean().alias("train_s"))
        .sort("variant"))
    print(per_variant)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: benchmarks/concurrency.py RUN_DIR")
    main(Path(sys.argv[1]))
