"""How each arm was tuned: its candidates, what the scheduler did with them, and what was chosen.

A reader of an ablation must be able to see that the arms were tuned alike: the same number
of candidates, a comparable budget spent on each, the chosen config, and that the compared
rows are replicates of that config on fresh seeds. Everything here is read from
trials.parquet and meta.json's ``protocol``; nothing is recomputed from Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from analysis.schema import CONFIG_PREFIX


def metric_column(protocol: Mapping[str, Any]) -> str:
    """The trials.parquet column the selection used (``best_val_acc`` for ``val_acc``)."""
    return f"best_{protocol.get('metric', 'val_acc')}"


def tuned_keys(protocol: Mapping[str, Any], arm: str) -> list[str]:
    domains = protocol.get("domains", {})
    return list(domains.get(arm, {}))


def selected_configs(trials: pl.DataFrame,
                     protocol: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per arm, the chosen candidate (its draw and tuned values), read off its replicates."""
    if "stage" not in trials.columns:
        return {}
    replicates = trials.filter(pl.col("stage") == "replicate")
    tune = trials.filter(pl.col("stage") == "tune")
    column = metric_column(protocol)
    chosen: dict[str, dict[str, Any]] = {}
    for arm in replicates["variant"].unique(maintain_order=True).to_list():
        rows = replicates.filter(pl.col("variant") == arm)
        draw = rows["draw"][0]
        values = {key: rows[CONFIG_PREFIX + key][0] for key in tuned_keys(protocol, arm)
                  if CONFIG_PREFIX + key in rows.columns}
        source = tune.filter((pl.col("variant") == arm) & (pl.col("draw") == draw))
        value = (source[column][0] if column in source.columns and source.height else None)
        chosen[arm] = {"draw": int(draw), "values": values, column: value,
                       "replicate_seeds": sorted(rows["seed"].to_list())}
    return chosen


def budget_table(tuning: pl.DataFrame, compared: pl.DataFrame,
                 protocol: Mapping[str, Any]) -> pl.DataFrame:
    """One row per arm: candidates, trial-epochs spent tuning, what the scheduler did, the choice."""
    if tuning.is_empty():
        return pl.DataFrame()
    max_t = protocol.get("max_epochs")
    column = metric_column(protocol)
    chosen = selected_configs(pl.concat([tuning, compared], how="diagonal_relaxed"), protocol)
    rows = []
    for arm in tuning["variant"].unique(maintain_order=True).to_list():
        mine = tuning.filter(pl.col("variant") == arm)
        epochs = mine["epochs_run"].fill_null(0)
        pick = chosen.get(arm)
        rows.append({
            "arm": arm,
            "candidates": mine.height,
            "trial-epochs": int(epochs.sum()),
            "full budget": int((epochs >= max_t).sum()) if max_t else None,
            "stopped early": int((mine["stopped_by"] == "scheduler").sum()),
            "diverged/failed": int(mine["status"].is_in(["diverged", "error"]).sum()),
            "chosen draw": pick["draw"] if pick else None,
            "chosen config": (", ".join(f"{k}={_short(v)}" for k, v in pick["values"].items())
                              if pick else "none: no usable candidate"),
            f"chosen {column}": pick.get(column) if pick else None,
            "replicate seeds": len(pick["replicate_seeds"]) if pick else 0,
        })
    return pl.DataFrame(rows)


def candidates_table(tuning: pl.DataFrame, compared: pl.DataFrame,
                     protocol: Mapping[str, Any]) -> pl.DataFrame:
    """One row per candidate: its tuned values, how far it trained, its best, its fate."""
    if tuning.is_empty():
        return pl.DataFrame()
    column = metric_column(protocol)
    chosen = selected_configs(pl.concat([tuning, compared], how="diagonal_relaxed"), protocol)
    rows = []
    for row in tuning.sort("variant", "draw").iter_rows(named=True):
        arm = row["variant"]
        values = {k: row.get(CONFIG_PREFIX + k) for k in tuned_keys(protocol, arm)}
        rows.append({
            "arm": arm, "draw": row["draw"],
            "config": ", ".join(f"{k}={_short(v)}" for k, v in values.items()),
            "epochs": row["epochs_run"], column: row.get(column),
            "status": row["status"] + (" (scheduler)" if row["stopped_by"] == "scheduler"
                                       else ""),
            "chosen": "yes" if chosen.get(arm, {}).get("draw") == row["draw"] else "",
        })
    return pl.DataFrame(rows)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
